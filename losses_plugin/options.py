"""Reading and checking option files before BasicSR sees them, so mistakes get a clear message.

BasicSR fails on a bad option file with a traceback from deep inside (a ``KeyError`` from a
registry, a ``FileNotFoundError`` from a dataset). :func:`read_option_file` and
:func:`check_options` say instead which key is wrong, what was expected and what to do.
"""
import os

import yaml

from losses_plugin.checkpoint_sets import keep_checkpoints
from losses_plugin.checks import OptionError, check_existing_file
from losses_plugin.strict_options import check_option_keys, drop_unread_keys
from losses_plugin.yaml_loader import SafeOrderedLoader
from losses_plugin_shim import close_names

PREPARE_HINT = ('Prepare the data with `python scripts/prepare_dataset.py --help` (image folders such as '
                'DIV2K, Flickr2K or BSD -> sub-images, bicubic LR and LMDB), or try the CPU demo options in '
                'options/demo/, whose data `python scripts/make_demo_data.py` (run by `bash scripts/demo.sh`) '
                'builds in datasets/demo/.')
DATA_PATH_KEYS = ('dataroot_gt', 'dataroot_lq', 'meta_info_file')
REQUIRED_KEYS = {True: ('name', 'model_type', 'num_gpu', 'datasets', 'path', 'train', 'logger'),
                 False: ('name', 'model_type', 'num_gpu', 'datasets', 'path')}


def read_option_file(path):
    """Parses a YAML option file with a safe loader; Python tags are refused, never executed.

    Returns:
        OrderedDict: the options in file order.
    """
    if not os.path.isfile(path):
        raise OptionError(f"option file '{path}' does not exist (the -opt argument; "
                          'paths are relative to the current directory)')
    with open(path, encoding='utf-8') as f:
        try:
            opt = yaml.load(f, Loader=SafeOrderedLoader)
        except yaml.constructor.ConstructorError as e:
            raise OptionError(f"option file '{path}' uses the YAML tag {e.problem.split()[-1]} "
                              f'{e.problem_mark}; option files may hold plain data only (mappings, lists, '
                              'strings, numbers), so it was refused and nothing in it was executed') from None
        except yaml.YAMLError as e:
            raise OptionError(f"option file '{path}' is not valid YAML: {e}") from None
    if not isinstance(opt, dict):
        raise OptionError(f"option file '{path}' must hold a mapping of options at the top level, "
                          f'got {type(opt).__name__}')
    return opt


def parse_options(root_path, is_train):
    """BasicSR's ``parse_options`` (command line, ``--force_yml``, distributed set-up, paths); with
    ``strict_options: false`` the keys no class reads are dropped, as :func:`check_options` warned.

    Args:
        root_path (str): where experiments and results go.
        is_train (bool): training (true) or testing options.

    Returns:
        tuple: the options (OrderedDict) and the parsed command line, as BasicSR returns them.
    """
    from basicsr.utils import options as basicsr_options

    opt, args = basicsr_options.parse_options(root_path, is_train=is_train)
    if opt.get('strict_options') is False:
        drop_unread_keys(opt)
    return opt, args


def apply_overrides(opt, entries):
    """Applies ``--force_yml`` entries (``train:total_iter=2``) as BasicSR will, for the checks.

    Values are read as YAML (``~``, numbers, lists); like BasicSR, only existing keys can be set.
    """
    for entry in entries or []:
        keys, sep, value = entry.partition('=')
        if not sep:
            raise OptionError(f"--force_yml {entry!r}: expected 'key:subkey=value'")
        *parents, last = [k.strip() for k in keys.split(':')]
        node = opt
        for key in parents:
            node = node.get(key) if isinstance(node, dict) else None
        if not isinstance(node, dict) or last not in node:
            raise OptionError(f"--force_yml {entry!r}: the option file has no key '{keys.strip()}' to change")
        node[last] = yaml.safe_load(value.strip())
    return opt


def _registered_names(opt):
    """Yields (option key, requested name, registry) for every registry lookup BasicSR will make."""
    from basicsr.utils.registry import (ARCH_REGISTRY, DATASET_REGISTRY, LOSS_REGISTRY, METRIC_REGISTRY,
                                        MODEL_REGISTRY)

    yield 'model_type', opt.get('model_type'), MODEL_REGISTRY
    for key, value in opt.items():
        if key.startswith('network_') and isinstance(value, dict):
            yield f'{key}.type', value.get('type'), ARCH_REGISTRY
    for phase, dataset in (opt.get('datasets') or {}).items():
        yield f'datasets.{phase}.type', dataset.get('type'), DATASET_REGISTRY
    for key, value in (opt.get('train') or {}).items():
        if key.endswith('_opt') and isinstance(value, dict) and 'type' in value:
            yield f'train.{key}.type', value['type'], LOSS_REGISTRY
    for key, value in ((opt.get('val') or {}).get('metrics') or {}).items():
        yield f'val.metrics.{key}.type', value.get('type'), METRIC_REGISTRY


def check_registered_names(opt):
    for key, name, registry in _registered_names(opt):
        if name in registry:
            continue
        known = list(registry.keys())
        close = close_names(name, known)
        hint = f'close matches: {", ".join(close)}' if close else f'registered: {", ".join(sorted(known))}'
        raise OptionError(f"{key}: '{name}' is not in BasicSR's {registry._name} registry ({hint}). "
                          'Names from losses_plugin are registered by `import losses_plugin`.')


def check_dataset_paths(opt):
    for phase, dataset in opt['datasets'].items():
        for key in DATA_PATH_KEYS:
            path = dataset.get(key)
            if path is not None and not os.path.exists(os.path.expanduser(path)):
                # an option file may say how its data is made (`prepare:`, ignored by BasicSR)
                hint = f'Prepare it with: {dataset["prepare"]}' if dataset.get('prepare') else PREPARE_HINT
                raise OptionError(f"datasets.{phase}.{key}: '{path}' does not exist "
                                  f'(relative to {os.getcwd()}). {hint}')


def check_pretrained_paths(opt):
    for key, path in (opt.get('path') or {}).items():
        if key.startswith('pretrain_network'):
            check_existing_file(f'path.{key}', path, 'train the network it names first, or set it to ~ to start '
                                'from scratch')


def check_options(opt, is_train, resuming=False, path=None):
    """Checks what BasicSR would otherwise report with a traceback; raises :class:`OptionError`.

    ``resuming`` (``--auto_resume`` or ``path.resume_state``) skips the pretrained-network check:
    BasicSR then loads the networks of the checkpoint instead. ``path`` (the option file) names the
    file in the messages of unknown option keys (:mod:`losses_plugin.strict_options`).
    """
    missing = [key for key in REQUIRED_KEYS[is_train] if key not in opt]
    if missing:
        raise OptionError(f'the option file lacks the key(s) {", ".join(missing)}')
    if not isinstance(opt['datasets'], dict) or not opt['datasets']:
        raise OptionError('datasets: expected a mapping of phases (train, val, val_2, test_1, ...) to datasets')
    if is_train and 'train' not in opt['datasets']:
        raise OptionError('datasets.train: training needs a train dataset')
    val = opt.get('val') or {}
    if not is_train and val.get('save_img') and 'suffix' not in val:
        raise OptionError('val.suffix: BasicSR needs it when testing with val.save_img: true '
                          '(`suffix: ~` names images <name>_<opt name>.png)')
    check_registered_names(opt)
    check_option_keys(opt, path)
    check_dataset_paths(opt)
    if is_train:
        keep_checkpoints(opt)
    if not (resuming or (opt.get('path') or {}).get('resume_state')):
        check_pretrained_paths(opt)
