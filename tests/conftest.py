"""Shared fixtures: the demo data (built once per session), tiny option files, CLI runners."""
import contextlib
import copy
import logging
import os
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml

import losses_plugin  # noqa: F401  (registers our classes for every test, as users import it first)

REPO = Path(__file__).resolve().parents[1]
PYTHON = sys.executable
DEMO_OPTIONS = REPO / 'options' / 'demo' / 'edsr_l1.yml'


@pytest.fixture(scope='session')
def demo_data(tmp_path_factory):
    """The demo data set, built by the real script into a temporary folder; or copied there from
    ``$LOSSES_PLUGIN_DEMO_DATA``, a set built before (``scripts/mutation_test.sh`` builds one, so that each
    mutant's tests skip the 8-second build)."""
    out = tmp_path_factory.mktemp('demo_data') / 'demo'
    if os.environ.get('LOSSES_PLUGIN_DEMO_DATA'):
        shutil.copytree(os.environ['LOSSES_PLUGIN_DEMO_DATA'], out)
        return out
    subprocess.run([PYTHON, str(REPO / 'scripts' / 'make_demo_data.py'), '--out', str(out)], check=True,
                   capture_output=True)
    return out


def tiny_options(demo_data, name, **train_overrides):
    """The demo EDSR options shrunk to seconds: 8 features, 1 block, 32x32 GT patches, batch 2."""
    opt = yaml.safe_load(DEMO_OPTIONS.read_text())
    opt['name'] = name
    opt['num_gpu'] = 0
    train = opt['datasets']['train']
    train.update(dataroot_gt=str(demo_data / 'train' / 'HR'), dataroot_lq=str(demo_data / 'train' / 'LR_bicubic' / 'X4'),
                 gt_size=32, batch_size_per_gpu=2, num_worker_per_gpu=0, dataset_enlarge_ratio=2)
    opt['datasets']['val'].update(dataroot_gt=str(demo_data / 'val' / 'HR'),
                                  dataroot_lq=str(demo_data / 'val' / 'LR_bicubic' / 'X4'))
    opt['network_g'].update(num_feat=8, num_block=1)
    opt['train'].update(total_iter=4, scheduler={'type': 'MultiStepLR', 'milestones': [100], 'gamma': 0.5})
    opt['train'].update(train_overrides)
    opt['val']['val_freq'] = 1000
    opt['val']['metrics'] = {'psnr': opt['val']['metrics']['psnr']}
    opt['logger'].update(print_freq=1, save_checkpoint_freq=1000, use_tb_logger=False)
    return opt


def write_options(opt, path):
    path = Path(path)
    path.write_text(yaml.safe_dump(copy.deepcopy(opt), sort_keys=False))
    return path


def run_cli(args, cwd, launcher=None, check=True, timeout=600, env=None):
    """Runs ``python -m losses_plugin ARGS`` (or under ``launcher``) in ``cwd``, with extra ``env``
    variables; returns the CompletedProcess."""
    command = (launcher or [PYTHON]) + ['-m', 'losses_plugin'] + [str(a) for a in args]
    env = dict(os.environ, OMP_NUM_THREADS='1', PYTHONUNBUFFERED='1', **(env or {}))
    result = subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
    if check and result.returncode != 0:
        raise AssertionError(f'{" ".join(command)} failed ({result.returncode}):\n{result.stdout}\n{result.stderr}')
    return result


def free_port():
    with socket.socket() as s:
        s.bind(('127.0.0.1', 0))
        return s.getsockname()[1]


def load_params(path, key='params'):
    return torch.load(path, map_location='cpu', weights_only=True)[key]


def construction(net):
    """What a network was built with, to compare two networks option by option: every module's plain
    attributes (an attention scale, a drop-path probability, checkpointing, ...), the printed form
    (dropout probabilities, layer sizes) and the parameter and buffer shapes."""
    plain = (int, float, bool, str, tuple, list, dict, type(None))
    attributes = {name: {k: v for k, v in vars(module).items() if not k.startswith('_') and isinstance(v, plain)}
                  for name, module in net.named_modules()}
    return attributes, repr(net), {k: tuple(v.shape) for k, v in net.state_dict().items()}


def training_log(experiment_dir):
    """The text of every train_*.log of an experiment, oldest first."""
    return '\n'.join(p.read_text() for p in sorted(Path(experiment_dir).glob('train_*.log')))


@contextlib.contextmanager
def basicsr_messages(level=logging.INFO):
    """The messages BasicSR's root logger ('basicsr') emits at ``level`` and above inside the block."""
    messages = []
    handler = logging.Handler(level)
    handler.emit = lambda record: messages.append(record.getMessage())
    logger = logging.getLogger('basicsr')
    logger.addHandler(handler)
    previous = logger.level
    if logger.getEffectiveLevel() > level:  # e.g. set up by an earlier test without a log file (level unset)
        logger.setLevel(level)
    try:
        yield messages
    finally:
        logger.removeHandler(handler)
        logger.setLevel(previous)


def basicsr_warnings():
    """The messages of the warnings BasicSR's root logger ('basicsr') emits inside the block."""
    return basicsr_messages(logging.WARNING)
