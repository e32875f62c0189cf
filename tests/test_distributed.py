"""`torchrun --nproc_per_node=2 -m losses_plugin train ... --launcher pytorch` on CPU (gloo DDP)."""
import hashlib
import os
import re
import subprocess
from pathlib import Path

import pytest
import torch
import yaml
from conftest import PYTHON, REPO, free_port, load_params, run_cli, tiny_options, training_log, write_options

pytestmark = pytest.mark.slow


def digest(state_dict):
    h = hashlib.sha256()
    for name, tensor in state_dict.items():
        h.update(name.encode())
        h.update(tensor.contiguous().reshape(-1).view(torch.uint8).numpy().tobytes())
    return h.hexdigest()


def test_two_ranks_train_with_ddp_and_end_identical(demo_data, tmp_path):
    opt = tiny_options(demo_data, 'ddp', total_iter=6)
    opt['logger']['save_checkpoint_freq'] = 3
    torchrun = [str(Path(PYTHON).parent / 'torchrun'), '--nproc_per_node=2', f'--master_port={free_port()}']
    result = run_cli(['train', '-opt', write_options(opt, tmp_path / 'ddp.yml'), '--launcher', 'pytorch'],
                     cwd=tmp_path, launcher=torchrun)

    experiment = tmp_path / 'experiments' / 'ddp'
    log = training_log(experiment)
    assert 'World size: 2' in log and 'iter:       6' in log
    # Each rank hashed its own parameters after training; rank 0 logged whether all agree.
    match = re.search(r'net_g parameters identical on all 2 ranks \(sha256 ([0-9a-f]{64})\)', log)
    assert match, f'no agreement line in the log:\n{log}\n{result.stderr[-3000:]}'
    assert match.group(1) == digest(load_params(experiment / 'models' / 'net_g_latest.pth'))
    # both ranks' generator states were gathered into the checkpoint
    rng = torch.load(experiment / 'training_states' / '3_rng.pth', weights_only=True)
    assert len(rng['ranks']) == 2 and not torch.equal(rng['ranks'][0]['torch'], rng['ranks'][1]['torch'])


def torchrun(nproc=2, *extra):
    return [str(Path(PYTHON).parent / 'torchrun'), f'--nproc_per_node={nproc}', *extra]


def dncnn_options(demo_data, name):
    """The DnCNN demo (BatchNorm in every middle layer) shrunk to seconds."""
    opt = yaml.safe_load((REPO / 'options' / 'demo' / 'dncnn_s25_l1.yml').read_text())
    opt.update(name=name, num_gpu=0)
    for phase in ('train', 'val'):
        opt['datasets'][phase]['dataroot_gt'] = str(demo_data / phase / 'HR')
    opt['datasets']['train'].update(gt_size=32, batch_size_per_gpu=2, num_worker_per_gpu=0, dataset_enlarge_ratio=2)
    opt['network_g'].update(num_feat=8, num_conv=3)
    opt['train'].update(total_iter=4, scheduler={'type': 'MultiStepLR', 'milestones': [100], 'gamma': 0.5})
    opt['logger'].update(print_freq=1, save_checkpoint_freq=2, use_tb_logger=False)
    return opt


def logged_validations(log):
    """Every validation's metrics in a BasicSR log, in order: [{'psnr': 31.2, ...}, ...]."""
    return [dict((m, float(v)) for m, v in re.findall(r'# (\w+): ([-\d.]+)', block))
            for block in re.findall(r'Validation \w+\n((?:\t # .*\n)+)', log)]


def single_process_test(opt, weights, tmp_path):
    """BasicSR's test pipeline (one process) on the run's validation set with ``weights``: its metrics."""
    test = {key: opt[key] for key in ('model_type', 'scale', 'num_gpu', 'network_g', 'val')}
    test.update(name=f"{opt['name']}_test", manual_seed=0, datasets={'test_1': opt['datasets']['val']},
                path={'pretrain_network_g': str(weights), 'strict_load_g': True})
    test['val'] = dict(opt['val'], save_img=False)
    run_cli(['test', '-opt', write_options(test, tmp_path / 'test.yml')], cwd=tmp_path)
    log = '\n'.join(p.read_text() for p in (tmp_path / 'results' / test['name']).glob('test_*.log'))
    return logged_validations(log)[-1]


@pytest.mark.parametrize('network', ['dncnn', 'edsr'])
def test_ddp_validation_mid_run_and_at_the_end_equals_one_process(demo_data, tmp_path, network):
    """Validation under torchrun (mid-run and after training) neither hangs nor differs from a one-process
    test of the saved weights; DnCNN's BatchNorm buffers used to deadlock rank 0's lone DDP forward."""
    name = f'ddp_val_{network}'
    opt = dncnn_options(demo_data, name) if network == 'dncnn' else tiny_options(demo_data, name)
    opt['val']['val_freq'] = 2
    opt['logger']['save_checkpoint_freq'] = 2
    result = run_cli(['train', '-opt', write_options(opt, tmp_path / f'{name}.yml'), '--launcher', 'pytorch'],
                     cwd=tmp_path, launcher=torchrun(2, f'--master_port={free_port()}'), timeout=300)
    experiment = tmp_path / 'experiments' / name
    log = training_log(experiment)
    validations = logged_validations(log)
    assert len(validations) == 3, log  # iterations 2 and 4, then the final one
    assert re.search(r'net_g parameters identical on all 2 ranks', log), result.stderr[-2000:]
    # the final validation scores the saved latest weights exactly as one process does
    alone = single_process_test(opt, experiment / 'models' / 'net_g_latest.pth', tmp_path)
    assert set(alone) == set(validations[-1]) and alone
    for metric, value in alone.items():
        assert validations[-1][metric] == pytest.approx(value, abs=1e-4), (metric, validations[-1], alone)


@pytest.mark.parametrize('rendezvous', ['static', 'c10d'])
def test_two_nodes_of_one_process_each_train_and_checkpoint_once(demo_data, tmp_path, rendezvous):
    """Two torchrun launchers (`--nnodes=2 --nproc_per_node=1`), as on two machines sharing a file system."""
    name = f'two_nodes_{rendezvous}'
    opt = tiny_options(demo_data, name, total_iter=4)
    opt['logger']['save_checkpoint_freq'] = 2
    opt_file = write_options(opt, tmp_path / f'{name}.yml')
    port = free_port()
    if rendezvous == 'static':
        nodes = [['--nnodes=2', f'--node_rank={rank}', '--master_addr=127.0.0.1', f'--master_port={port}']
                 for rank in (0, 1)]
    else:
        # on one machine both launchers would take themselves for the store's host; on a cluster only HOST0 does
        nodes = [['--nnodes=2', '--rdzv_backend=c10d', f'--rdzv_endpoint=127.0.0.1:{port}', f'--rdzv_id={name}',
                  f'--rdzv_conf=is_host={int(rank == 0)}'] for rank in (0, 1)]
    env = dict(os.environ, OMP_NUM_THREADS='1', PYTHONUNBUFFERED='1')
    launchers = [subprocess.Popen(torchrun(1, *node) + ['-m', 'losses_plugin', 'train', '-opt', str(opt_file),
                                                         '--launcher', 'pytorch'],
                                  cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
                 for node in nodes]
    outputs = [launcher.communicate(timeout=300) for launcher in launchers]
    for launcher, (_, stderr) in zip(launchers, outputs):
        assert launcher.returncode == 0, stderr[-3000:]
    experiment = tmp_path / 'experiments' / name
    log = training_log(experiment)
    assert len(list(experiment.glob('train_*.log'))) == 1  # rank 0 alone logs and writes
    assert 'World size: 2' in log and log.count('Saving models and training states.') == 2
    match = re.search(r'net_g parameters identical on all 2 ranks \(sha256 ([0-9a-f]{64})\)', log)
    assert match and match.group(1) == digest(load_params(experiment / 'models' / 'net_g_latest.pth'))
    assert sorted(p.name for p in (experiment / 'training_states').iterdir()) == ['2.state', '2_rng.pth',
                                                                                  '4.state', '4_rng.pth']
