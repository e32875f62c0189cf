"""``basicsr train|test -opt FILE.yml ...``, also ``python -m losses_plugin train|test ...``.

The arguments are BasicSR's (``-opt``, ``--launcher none|pytorch|slurm``, ``--auto_resume``,
``--debug``, ``--local_rank``/``--local-rank``, ``--force_yml``). Experiments, tb_logger and
results go under the current working directory, as BasicSR's scripts do from its repository root.
The option file is read safely and checked first, so mistakes are reported as one clear line.
"""
import argparse
import sys

EXAMPLES = """examples:
  basicsr train -opt options/demo/edsr_l1.yml
  basicsr train -opt options/edsr_sploss.yml --auto_resume
  torchrun --nproc_per_node=4 -m losses_plugin train -opt options/edsr_sploss.yml --launcher pytorch
  basicsr test -opt my_test_options.yml"""


def _add_basicsr_arguments(parser, command):
    parser.add_argument('-opt', metavar='FILE.yml', required=True, help='the option file (YAML)')
    parser.add_argument('--launcher', choices=['none', 'pytorch', 'slurm'], default='none',
                        help='none: one process; pytorch: under torchrun; slurm: under srun (default: none)')
    if command == 'train':
        parser.add_argument('--auto_resume', action='store_true',
                            help='continue from the latest training state in experiments/<name>/training_states')
    parser.add_argument('--debug', action='store_true', help="BasicSR's debug mode (prints and validates often)")
    parser.add_argument('--local_rank', type=int, default=0, help='set by older launchers; ignored otherwise')
    parser.add_argument('--force_yml', nargs='+', metavar='KEY:SUB=VALUE',
                        help='override option-file entries, e.g. train:total_iter=1000')


def build_parser():
    """The command line as ``--help`` shows it; the arguments themselves go on to BasicSR's own parser."""
    from basicsr.version import __version__ as basicsr_version

    from losses_plugin import __version__

    parser = argparse.ArgumentParser(
        prog='basicsr', description='Train or test a BasicSR model with the losses, networks and models of '
        'losses_plugin registered.', epilog=EXAMPLES, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--version', action='version',
                        version=f'losses_plugin {__version__}, BasicSR {basicsr_version}')
    commands = parser.add_subparsers(dest='command', metavar='{train,test}', required=True)
    for command, text in (('train', 'train a model from an option file'),
                          ('test', 'test (score) trained models on the test sets of an option file')):
        sub = commands.add_parser(command, help=text, description=text, epilog=EXAMPLES,
                                  formatter_class=argparse.RawDescriptionHelpFormatter)
        _add_basicsr_arguments(sub, command)
    return parser


def _normalise_args(args):
    """The older ``torch.distributed.launch`` passes ``--local-rank``; BasicSR's parser wants ``--local_rank``."""
    return [a.replace('--local-rank', '--local_rank', 1) if a.startswith('--local-rank') else a for a in args]


def run(command, args, parsed):
    """Runs ``command`` ('train' or 'test') with BasicSR's command-line ``args``."""
    import os

    from losses_plugin.distributed import close_process_group, settings
    from losses_plugin.options import apply_overrides, check_options, parse_options, read_option_file

    opt = apply_overrides(read_option_file(parsed.opt), parsed.force_yml)
    check_options(opt, is_train=command == 'train', resuming=getattr(parsed, 'auto_resume', False), path=parsed.opt)
    # BasicSR initialises the process group before it reads num_gpu; CPU training needs gloo.
    settings.cpu_backend = opt['num_gpu'] == 0
    sys.argv = [f'basicsr {command}'] + args  # BasicSR's parse_options reads sys.argv
    root_path = os.getcwd()
    try:
        if command == 'train':
            from losses_plugin.train import train_pipeline
            train_pipeline(root_path)
        else:
            import basicsr.test
            # BasicSR's test pipeline parses the options itself; ours also drops what strict_options: false ignores
            basicsr.test.parse_options = parse_options
            basicsr.test.test_pipeline(root_path)
    finally:
        distributed = close_process_group()
    return distributed


def exit_now(code):
    """Ends a distributed rank at once, after flushing the logs: at interpreter shutdown gloo's threads can
    still abort a rank whose run succeeded ('terminate called without an active exception')."""
    import logging
    import os

    logging.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


def main(argv=None):
    argv = _normalise_args(sys.argv[1:] if argv is None else list(argv))
    import losses_plugin  # noqa: F401  (patches BasicSR and registers everything first)
    from losses_plugin.checks import OptionError
    from losses_plugin.train import TrainingStopped

    try:
        parsed = build_parser().parse_args(argv)
    except SystemExit as done:  # --help and --version (0), usage errors (2): argparse has printed them
        return done.code
    try:
        distributed = run(parsed.command, argv[1:], parsed)
    except OptionError as e:
        print(f'basicsr {parsed.command}: error: {e}', file=sys.stderr)
        return 2
    except TrainingStopped as e:
        print(f'basicsr {parsed.command}: {e}', file=sys.stderr)
        return e.exit_code
    if distributed:
        exit_now(0)
    return 0
