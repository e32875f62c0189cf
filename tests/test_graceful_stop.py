"""SIGTERM / SIGINT (a cluster scheduler's preemption, Ctrl-C) end `basicsr train` with a resumable checkpoint
of the current iteration, and `--auto_resume` continues from it as if nothing had happened."""
import hashlib
import os
import re
import signal
import subprocess
import time
from pathlib import Path

import pytest
import torch
from conftest import PYTHON, free_port, load_params, run_cli, tiny_options, training_log, write_options

pytestmark = pytest.mark.slow


def start_training(opt_file, cwd, launcher=None):
    command = (launcher or [PYTHON]) + ['-m', 'losses_plugin', 'train', '-opt', str(opt_file)]
    if launcher:
        command += ['--launcher', 'pytorch']
    env = dict(os.environ, OMP_NUM_THREADS='1', PYTHONUNBUFFERED='1')
    return subprocess.Popen(command, cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def wait_for_iteration(experiment, iteration, process, timeout=120):
    deadline = time.time() + timeout
    while time.time() < deadline:
        if process.poll() is not None:
            raise AssertionError(f'training ended early: {process.communicate()}')
        if experiment.exists():
            # the progress lines only: the option dump's `total_iter: 100000` must not count as iteration 100000
            done = [int(i) for i in re.findall(r'\[epoch:\s*\d+, iter:\s*(\d+), lr:', training_log(experiment))]
            if done and max(done) >= iteration:
                return
        time.sleep(0.2)
    raise AssertionError(f'no iteration {iteration} logged within {timeout} s')


def digest(state_dict):
    h = hashlib.sha256()
    for name, tensor in state_dict.items():
        h.update(name.encode() + tensor.contiguous().reshape(-1).view(torch.uint8).numpy().tobytes())
    return h.hexdigest()


def long_options(demo_data, name):
    opt = tiny_options(demo_data, name, total_iter=100000)
    opt['logger']['save_checkpoint_freq'] = 100000  # only the stop writes a checkpoint
    opt['val']['val_freq'] = 100000
    return opt


@pytest.mark.parametrize('signum', [signal.SIGTERM, signal.SIGINT])
def test_signal_saves_the_current_iteration_and_auto_resume_continues_exactly(demo_data, tmp_path, signum):
    opt = long_options(demo_data, 'stopped')
    opt_file = write_options(opt, tmp_path / 'stopped.yml')
    experiment = tmp_path / 'experiments' / 'stopped'
    process = start_training(opt_file, tmp_path)
    wait_for_iteration(experiment, 3, process)
    process.send_signal(signum)
    _, stderr = process.communicate(timeout=120)

    assert process.returncode == 128 + signum, stderr[-3000:]
    match = re.search(rf'^basicsr train: stopped by {signal.Signals(signum).name} at iteration (\d+); training state '
                      r'saved to (\S+); continue with --auto_resume$', stderr, re.M)
    assert match, stderr[-3000:]
    stopped_at = int(match.group(1))
    assert 'Traceback' not in stderr
    assert match.group(2).endswith(f'training_states/{stopped_at}.state')
    for saved in (f'training_states/{stopped_at}.state', f'training_states/{stopped_at}_rng.pth',
                  f'models/net_g_{stopped_at}.pth'):
        assert (experiment / saved).is_file(), saved

    # resume to two iterations past the stop; an uninterrupted run of the same length ends identical
    end = stopped_at + 2
    run_cli(['train', '-opt', opt_file, '--auto_resume', '--force_yml', f'train:total_iter={end}'], cwd=tmp_path)
    assert f'Resuming training from iter: {stopped_at}' in training_log(experiment)
    reference = dict(opt, name='uninterrupted')
    reference['train'] = dict(opt['train'], total_iter=end)
    run_cli(['train', '-opt', write_options(reference, tmp_path / 'reference.yml')], cwd=tmp_path)
    resumed = load_params(experiment / 'models' / 'net_g_latest.pth')
    uninterrupted = load_params(tmp_path / 'experiments' / 'uninterrupted' / 'models' / 'net_g_latest.pth')
    assert digest(resumed) == digest(uninterrupted)


def test_sigterm_to_the_torchrun_launcher_stops_both_ranks_at_one_iteration(demo_data, tmp_path):
    opt = long_options(demo_data, 'ddp_stopped')
    opt_file = write_options(opt, tmp_path / 'ddp_stopped.yml')
    experiment = tmp_path / 'experiments' / 'ddp_stopped'
    launcher = [str(Path(PYTHON).parent / 'torchrun'), '--nproc_per_node=2', f'--master_port={free_port()}']
    process = start_training(opt_file, tmp_path, launcher=launcher)
    wait_for_iteration(experiment, 3, process)
    process.send_signal(signal.SIGTERM)
    _, stderr = process.communicate(timeout=120)

    assert process.returncode != 0
    stops = [int(i) for i in re.findall(r'basicsr train: stopped by SIGTERM at iteration (\d+)', stderr)]
    assert len(stops) == 2 and stops[0] == stops[1], stderr[-3000:]  # each rank's line, one iteration
    stopped_at = stops[0]
    assert sorted(p.name for p in (experiment / 'training_states').iterdir()) == [f'{stopped_at}.state',
                                                                                  f'{stopped_at}_rng.pth']
    rng = torch.load(experiment / 'training_states' / f'{stopped_at}_rng.pth', weights_only=True)
    assert len(rng['ranks']) == 2

    run_cli(['train', '-opt', opt_file, '--launcher', 'pytorch', '--auto_resume', '--force_yml',
             f'train:total_iter={stopped_at + 2}'], cwd=tmp_path,
            launcher=launcher[:-1] + [f'--master_port={free_port()}'])
    log = training_log(experiment)
    assert f'Resuming training from iter: {stopped_at}' in log
    assert 'net_g parameters identical on all 2 ranks' in log
