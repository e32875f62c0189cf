"""Which process group ``--launcher pytorch`` opens: gloo where the options train on CPU (``num_gpu: 0``), also
through BasicSR's own ``parse_options`` (its ``train_pipeline``, a project's ``train.py``), which opens the group
before it reads ``num_gpu``; NCCL with ``torch.cuda.set_device`` on a CUDA machine otherwise.

The CUDA machine is recreated: ``torch.cuda.is_available`` says True and ``init_process_group`` records the backend
instead of opening a group."""
import sys

import pytest
import torch
import torch.distributed as dist
from basicsr.utils.options import parse_options
from conftest import tiny_options, write_options

from losses_plugin.distributed import settings, trains_on_cpu


@pytest.fixture
def cuda_machine(monkeypatch):
    opened = []
    monkeypatch.setattr(torch.cuda, 'is_available', lambda: True)
    monkeypatch.setattr(torch.cuda, 'device_count', lambda: 2)
    monkeypatch.setattr(torch.cuda, 'set_device', lambda device: opened.append(('set_device', device)))
    monkeypatch.setattr(dist, 'init_process_group', lambda backend, **kwargs: opened.append(backend))
    monkeypatch.setattr(settings, 'cpu_backend', None)  # as in a process that never ran our CLI
    monkeypatch.setenv('RANK', '1')
    return opened


@pytest.mark.parametrize('num_gpu, force, expected', [
    (0, [], ['gloo']),
    (2, [], [('set_device', 1), 'nccl']),
    ('auto', [], [('set_device', 1), 'nccl']),
    (2, ['--force_yml', 'num_gpu=0'], ['gloo']),  # BasicSR applies --force_yml after it opened the group
    (0, ['--force_yml', 'train:total_iter=2', 'num_gpu=auto'], [('set_device', 1), 'nccl']),
])
def test_basicsr_parse_options_opens_the_group_the_options_train_on(demo_data, tmp_path, monkeypatch, cuda_machine,
                                                                      num_gpu, force, expected):
    opt = tiny_options(demo_data, 'backend')
    opt['num_gpu'] = num_gpu
    monkeypatch.setattr(sys, 'argv', ['train.py', '-opt', str(write_options(opt, tmp_path / 'o.yml')),
                                      '--launcher', 'pytorch', *force])
    parse_options(str(tmp_path), is_train=True)
    assert cuda_machine == expected


def test_our_command_lines_decision_comes_first(tmp_path, monkeypatch, cuda_machine):
    monkeypatch.setattr(settings, 'cpu_backend', False)  # our CLI read num_gpu 2 from the checked options
    (tmp_path / 'o.yml').write_text('num_gpu: 0\n')
    monkeypatch.setattr(sys, 'argv', ['train.py', '-opt', str(tmp_path / 'o.yml')])
    from basicsr.utils.dist_util import init_dist
    init_dist('pytorch')
    assert cuda_machine == [('set_device', 1), 'nccl']


@pytest.mark.parametrize('content', [None, 'num_gpu: [unclosed\n', '- a list\n'])
def test_an_unreadable_option_file_is_left_to_basicsr(tmp_path, content):
    path = tmp_path / 'o.yml'
    if content is not None:
        path.write_text(content)
    assert trains_on_cpu(['-opt', str(path), '--launcher', 'pytorch']) is False
