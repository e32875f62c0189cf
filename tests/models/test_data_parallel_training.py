"""``basicsr train`` and ``basicsr test`` of FGDModel with DataParallel networks: BasicSR's loop trains (two
replicas per batch), logs the weight maps, validates and saves checkpoints of the bare network; the test command
loads it and scores the images (one replica per image, as DataParallel runs a batch of one).

The subprocess is our CLI with BasicSR's ``model_to_device`` wrapping every network it places in the simulated
two-GPU DataParallel (``data_parallel_simulation``); on a CPU BasicSR cannot be asked for ``num_gpu: 2``.
"""
import os
import subprocess

import pytest
import torch
from conftest import PYTHON, REPO, load_params, training_log, write_options
from test_fgd_model import fgd_options

from losses_plugin.archs.fgd_arch import FGDNet

ENTRY = f'''
import atexit
import sys

import losses_plugin  # noqa: F401  (its BasicSR patches come first)
from basicsr.models.base_model import BaseModel

sys.path.insert(0, {str(REPO / 'tests')!r})
from data_parallel_simulation import SimulatedDataParallel


class Counted(SimulatedDataParallel):
    replicas = []

    def forward(self, *inputs, **kwargs):
        output = super().forward(*inputs, **kwargs)
        Counted.replicas.append(len(self.replica_threads))
        return output


BaseModel.model_to_device = lambda self, net: Counted(net.to(self.device))
atexit.register(lambda: print('replicas per forward:', sorted(set(Counted.replicas))))
from losses_plugin.cli import main
sys.exit(main())
'''


def run_entry(tmp_path, args):
    entry = tmp_path / 'entry.py'
    entry.write_text(ENTRY)
    result = subprocess.run([PYTHON, str(entry), *map(str, args)], cwd=tmp_path, capture_output=True, text=True,
                            timeout=300, env=dict(os.environ, OMP_NUM_THREADS='1'))
    assert result.returncode == 0, result.stderr[-3000:]
    return result.stdout


@pytest.mark.slow
def test_fgd_trains_validates_logs_maps_saves_and_tests_under_data_parallel(demo_data, tmp_path):
    opt = fgd_options(demo_data, 'fgd_dp', total_iter=2)
    opt['datasets']['train']['num_worker_per_gpu'] = 0
    opt['val']['val_freq'] = 2
    opt['logger'].update(save_checkpoint_freq=2, use_tb_logger=True, log_weight_maps=True)
    out = run_entry(tmp_path, ['train', '-opt', write_options(opt, tmp_path / 'train.yml')])
    assert 'replicas per forward: [1, 2]' in out  # training batches of 2: two replicas; validation images: one
    experiment = tmp_path / 'experiments' / 'fgd_dp'
    log = training_log(experiment)
    assert 'iter:       2' in log and 'Validation DemoVal' in log and '# psnr:' in log
    saved = load_params(experiment / 'models' / 'net_g_latest.pth')
    bare = FGDNet(**{k: v for k, v in opt['network_g'].items() if k != 'type'})
    bare.load_state_dict(saved)  # strict: the bare network's keys, no DataParallel 'module.' prefix
    assert all(torch.isfinite(value).all() for value in saved.values())

    val = opt['datasets']['val']
    test_opt = {'name': 'fgd_dp_test', 'model_type': 'FGDModel', 'scale': 4, 'num_gpu': 0,
                'datasets': {'test_1': {'name': 'DemoVal', 'type': 'PairedImageDataset', 'io_backend': {'type': 'disk'},
                                        'dataroot_gt': val['dataroot_gt'], 'dataroot_lq': val['dataroot_lq']}},
                'network_g': opt['network_g'],
                'path': {'pretrain_network_g': str(experiment / 'models' / 'net_g_latest.pth'), 'strict_load_g': True},
                'val': {'save_img': False, 'metrics': {'psnr': {'type': 'calculate_psnr', 'crop_border': 4}}}}
    out = run_entry(tmp_path, ['test', '-opt', write_options(test_opt, tmp_path / 'test.yml')])
    assert 'replicas per forward: [1]' in out
    logs = list((tmp_path / 'results' / 'fgd_dp_test').glob('test_*.log'))
    assert len(logs) == 1 and '# psnr:' in logs[0].read_text()
