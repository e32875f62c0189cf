"""The exception of a training run that ended early on purpose (a step policy, a signal)."""


class TrainingStopped(RuntimeError):
    """Training ended early on purpose; the message says why and what was kept. The command line
    prints it as one line and exits with ``exit_code``."""

    exit_code = 1
