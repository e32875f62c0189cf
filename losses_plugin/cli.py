"""``basicsr train|test -opt FILE.yml ...``, also ``python -m losses_plugin train|test ...``.

The arguments are BasicSR's (``-opt``, ``--launcher none|pytorch|slurm``, ``--auto_resume``,
``--debug``, ``--local_rank``/``--local-rank``, ``--force_yml``). Experiments, tb_logger and
results go under the current working directory, as BasicSR's scripts do from its repository root.
The option file is read safely and checked first, so mistakes are reported as one clear line.
"""
import argparse
import os
import sys

USAGE = 'usage: basicsr {train,test} -opt FILE.yml [--launcher none|pytorch|slurm] [--auto_resume] [--debug]'


def _normalise_args(args):
    """The older ``torch.distributed.launch`` passes ``--local-rank``; BasicSR's parser wants ``--local_rank``."""
    return [a.replace('--local-rank', '--local_rank', 1) if a.startswith('--local-rank') else a for a in args]


def _known_args(args):
    parser = argparse.ArgumentParser(add_help=False)
    parser.add_argument('-opt')
    parser.add_argument('--force_yml', nargs='+')
    parser.add_argument('--auto_resume', action='store_true')
    known, _ = parser.parse_known_args(args)
    return known


def run(command, args):
    """Runs ``command`` ('train' or 'test') with BasicSR's command-line ``args``."""
    from losses_plugin import compat  # (importing the package patches BasicSR and registers everything first)
    from losses_plugin.options import OptionError, apply_overrides, check_options, read_option_file

    args = _normalise_args(args)
    known = _known_args(args)
    if known.opt is None:
        raise OptionError(f'the -opt option file is required\n{USAGE}')
    opt = apply_overrides(read_option_file(known.opt), known.force_yml)
    check_options(opt, is_train=command == 'train', resuming=known.auto_resume)
    # BasicSR initialises the process group before it reads num_gpu; CPU training needs gloo.
    compat.cpu_distributed = opt['num_gpu'] == 0
    sys.argv = [f'basicsr {command}'] + args  # BasicSR's parse_options reads sys.argv
    root_path = os.getcwd()
    try:
        if command == 'train':
            from losses_plugin.train import train_pipeline
            return train_pipeline(root_path)
        from basicsr.test import test_pipeline
        return test_pipeline(root_path)
    finally:
        close_process_group()


def close_process_group():
    """Ends the process group BasicSR opened: left to interpreter shutdown, gloo's threads can abort
    a rank after a successful run ('terminate called without an active exception')."""
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def main(argv=None):
    argv = sys.argv[1:] if argv is None else list(argv)
    if not argv or argv[0] not in ('train', 'test'):
        print(USAGE, file=sys.stderr)
        return 2
    from losses_plugin.options import OptionError
    try:
        run(argv[0], argv[1:])
    except OptionError as e:
        print(f'basicsr {argv[0]}: error: {e}', file=sys.stderr)
        return 2
    return 0
