"""Advisory locks between reproduce.py processes on one machine: two of them may train one grid side by side
(one per core or GPU), each claiming a seed before it trains it and locking the report folder while it
updates ``seeds.json``."""
import contextlib
import os

try:
    import fcntl
except ImportError:  # Windows: no advisory locks; run one reproduce.py per grid there
    fcntl = None

CLAIM_DIR = os.path.join('experiments', '.claims')  # beside the run folders BasicSR writes


@contextlib.contextmanager
def exclusive_lock(path: str, wait: bool = True):
    """Holds an advisory ``flock`` on ``path`` (a file, created if missing, or a folder) and yields True; with
    ``wait=False`` yields False at once when another open of ``path`` holds it. The kernel releases it when its
    holder dies, so a killed process leaves no stale lock."""
    if fcntl is None:
        yield True
        return
    fd = os.open(path, os.O_RDONLY if os.path.isdir(path) else os.O_RDONLY | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | (0 if wait else fcntl.LOCK_NB))
            held = True
        except BlockingIOError:
            held = False
        yield held
    finally:
        os.close(fd)


@contextlib.contextmanager
def claimed(experiment: str, wait: bool = False):
    """Yields True while this process holds the claim on training ``experiment``; False at once when another
    process holds it (it is training that seed now), or with ``wait=True`` True once that process let it go."""
    os.makedirs(CLAIM_DIR, exist_ok=True)
    with exclusive_lock(os.path.join(CLAIM_DIR, f'{experiment}.lock'), wait=wait) as held:
        yield held
