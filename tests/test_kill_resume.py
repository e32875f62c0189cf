"""A run killed at any moment resumes with --auto_resume from its newest complete checkpoint and ends
identical to an uninterrupted run: torn files, SIGKILL while each kind of file is written (the test hook of
losses_plugin.checkpoint_files blocks that write), TLW, torchrun with a worker killed, a full disk, and a soak
of random kills. One thread, tiny EDSR with EMA, bit-identical comparisons."""
import os
import random
import re
import shutil
import signal
import subprocess
import time
from pathlib import Path

import pytest
import torch
from conftest import PYTHON, free_port, load_params, run_cli, tiny_options, training_log, write_options
from test_graceful_stop import wait_for_iteration

from losses_plugin import checkpoint_sets
from losses_plugin.checkpoint_files import FAULT_HOOK

pytestmark = pytest.mark.slow

END = 10  # saves at 4 and 8; 6 iterations per epoch, so 4 is mid-epoch


def kill_options(demo_data, name, model='SRModel', total_iter=END):
    opt = tiny_options(demo_data, name, total_iter=total_iter, ema_decay=0.9)
    opt['logger']['save_checkpoint_freq'] = 4
    if model == 'TLWModel':
        opt['model_type'] = 'TLWModel'
        opt['network_w'] = {'type': 'TLWWeightingNet', 'num_feat': 8}
        opt['train']['pixel_opt'] = {'type': 'TLWLoss', 'base': 'l1'}
        opt['train']['optim_w'] = {'type': 'Adam', 'lr': 1e-3, 'betas': [0.5, 0.999]}
        opt['train']['tlw'] = {'judge': {'type': 'ms_ssim'}, 'tau': 1}
    return opt


def final_networks(experiment):
    """Every tensor of the run's ``*_latest.pth`` files (net_g's params and params_ema, net_w's)."""
    tensors = {}
    for path in sorted((Path(experiment) / 'models').glob('*_latest.pth')):
        for key, params in torch.load(path, map_location='cpu', weights_only=True).items():
            tensors.update({f'{path.name}/{key}/{name}': tensor for name, tensor in params.items()})
    return tensors


def assert_identical(experiment, reference):
    a, b = final_networks(experiment), final_networks(reference)
    assert a.keys() == b.keys() and a
    for name in a:
        assert torch.equal(a[name], b[name]), f'{name} differs from the uninterrupted run'


@pytest.fixture(scope='module')
def uninterrupted(demo_data, tmp_path_factory):
    """{model type: the experiment folder of an uninterrupted run of END iterations}, run on first use."""
    runs = {}
    folder = tmp_path_factory.mktemp('uninterrupted')

    def run(model='SRModel'):
        if model not in runs:
            opt = kill_options(demo_data, f'reference_{model}', model)
            run_cli(['train', '-opt', write_options(opt, folder / f'{model}.yml')], cwd=folder)
            runs[model] = folder / 'experiments' / opt['name']
        return runs[model]

    return run


def start(opt_file, cwd, env=None, launcher=None, extra=()):
    command = (launcher or [PYTHON]) + ['-m', 'losses_plugin', 'train', '-opt', str(opt_file), *extra]
    env = dict(os.environ, OMP_NUM_THREADS='1', PYTHONUNBUFFERED='1', **(env or {}))
    output = open(Path(cwd) / f'{Path(opt_file).stem}_{time.time_ns()}.out', 'w')
    return subprocess.Popen(command, cwd=cwd, env=env, stdout=output, stderr=subprocess.STDOUT, text=True,
                            start_new_session=True), output.name


def wait_for(condition, process, what, timeout=120):
    deadline = time.time() + timeout
    while time.time() < deadline:
        found = condition()
        if found:
            return found
        if process.poll() is not None:
            raise AssertionError(f'the run ended before {what}')
        time.sleep(0.02)
    raise AssertionError(f'no {what} within {timeout} s')


def resume(opt_file, cwd, *extra):
    """--auto_resume to END; returns (iteration resumed from, stderr)."""
    result = run_cli(['train', '-opt', opt_file, '--auto_resume', *extra], cwd=cwd)
    log = training_log(Path(cwd) / 'experiments' / Path(opt_file).stem)
    resumed = [int(i) for i in re.findall(r'Resuming training from iter: (\d+)\.', log)]
    return (resumed[-1] if resumed else None), result.stderr


def test_each_torn_file_resumes_from_the_previous_complete_set(demo_data, tmp_path, uninterrupted):
    """8.state, net_g_8.pth, 8_rng.pth in turn cut to half (as a kill mid-write by a plain torch.save leaves them),
    with a stray temporary file: each resume starts at 4, rewrites the set of 8, and ends identical."""
    opt = kill_options(demo_data, 'torn', total_iter=8)
    opt_file = write_options(opt, tmp_path / 'torn.yml')
    run_cli(['train', '-opt', opt_file], cwd=tmp_path)
    write_options(dict(opt, train=dict(opt['train'], total_iter=END)), opt_file)
    experiment = tmp_path / 'experiments' / 'torn'
    for torn in ('training_states/8.state', 'models/net_g_8.pth', 'training_states/8_rng.pth'):
        path = experiment / torn
        size = path.stat().st_size
        path.write_bytes(path.read_bytes()[:size // 2])
        (experiment / 'training_states' / '8.state.partial-4242').write_bytes(b'left by a killed save')
        if torn == 'models/net_g_8.pth':
            explicit = run_cli(['train', '-opt', opt_file, '--force_yml',
                                f'path:resume_state={experiment}/training_states/8.state'], cwd=tmp_path, check=False)
            assert explicit.returncode == 2 and 'Traceback' not in explicit.stderr
            assert explicit.stderr.strip().splitlines()[-1] == (
                f'basicsr train: error: path.resume_state: {experiment}/training_states/8.state is not a complete '
                f'checkpoint: {path} has {size // 2} bytes, the set lists {size}; '
                f'the newest complete checkpoint there is {experiment}/training_states/4.state'), explicit.stderr
        resumed_from, stderr = resume(opt_file, tmp_path)
        assert resumed_from == 4, stderr[-3000:]
        # on the console and, although said before the log file is opened, in the log file too
        newest_log = sorted(experiment.glob('train_*.log'))[-1].read_text()
        for text in (stderr, newest_log):
            stepped = re.findall(r'WARNING: --auto_resume steps over the checkpoint of iteration 8: (\S+) ', text)
            assert stepped == [str(path)], text[-3000:]
            assert 'WARNING: --auto_resume removed experiments/torn/training_states/8.state.partial-4242' in text
        assert_identical(experiment, uninterrupted())


@pytest.mark.parametrize('model, blocked', [
    ('SRModel', ('models/net_g_8.pth', 'training_states/8_rng.pth', 'training_states/8.state')),
    ('TLWModel', ('models/net_w_8.pth', )),
])
def test_sigkill_while_each_kind_of_file_is_written_resumes_exactly(demo_data, tmp_path, uninterrupted, model,
                                                                     blocked):
    """The write of each file in turn blocks (test hook) and the run is SIGKILLed there; each resume starts
    at 4 and the last one, left to finish, ends identical."""
    opt_file = write_options(kill_options(demo_data, 'killed', model), tmp_path / 'killed.yml')
    experiment = tmp_path / 'experiments' / 'killed'
    for index, name in enumerate(blocked):
        path = experiment / name
        process, _ = start(opt_file, tmp_path, env={FAULT_HOOK: f'block:{path.name}'},
                           extra=['--auto_resume'] if index else [])
        try:
            temporary = path.parent / f'{path.name}.partial-{process.pid}'  # not one a killed run left
            wait_for(temporary.exists, process, f'{path.name} written')
        finally:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
        assert not (experiment / 'training_states' / '8.state').exists()  # the set of 8 never completed
        assert training_log(experiment).count('Resuming training from iter: 4.') == index
    resumed_from, stderr = resume(opt_file, tmp_path)
    assert resumed_from == 4, stderr[-3000:]
    assert f'--auto_resume removed {path.relative_to(tmp_path)}.partial-' in stderr
    assert_identical(experiment, uninterrupted(model))


def worker_pids(launcher_pid):
    """{rank: pid} of torchrun's workers."""
    children = Path(f'/proc/{launcher_pid}/task/{launcher_pid}/children').read_text().split()
    ranks = {}
    for pid in children:
        environ = Path(f'/proc/{pid}/environ').read_bytes().split(b'\0')
        rank = [v for v in environ if v.startswith(b'RANK=')]
        if rank:
            ranks[int(rank[0][5:])] = int(pid)
    return ranks


def test_torchrun_with_a_worker_killed_resumes_exactly(demo_data, tmp_path):
    opt = kill_options(demo_data, 'ddp_killed', total_iter=100000)
    opt_file = write_options(opt, tmp_path / 'ddp_killed.yml')
    experiment = tmp_path / 'experiments' / 'ddp_killed'

    def torchrun():
        return [str(Path(PYTHON).parent / 'torchrun'), '--nproc_per_node=2', f'--master_port={free_port()}']

    process, _ = start(opt_file, tmp_path, launcher=torchrun(), extra=['--launcher', 'pytorch'])
    try:
        wait_for_iteration(experiment, 6, process)
        workers = wait_for(lambda: worker_pids(process.pid) if len(worker_pids(process.pid)) == 2 else None,
                           process, 'two workers')
        os.kill(workers[1], signal.SIGKILL)
        assert process.wait(timeout=120) != 0
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
    newest, state, _ = checkpoint_sets.newest_complete_set(str(experiment / 'training_states'))
    end = state['iter'] + 3
    result = run_cli(['train', '-opt', opt_file, '--launcher', 'pytorch', '--auto_resume', '--force_yml',
                      f'train:total_iter={end}'], cwd=tmp_path, launcher=torchrun())
    assert f"Resuming training from iter: {state['iter']}." in training_log(experiment), result.stderr[-3000:]

    reference = dict(opt, name='ddp_reference', train=dict(opt['train'], total_iter=end))
    run_cli(['train', '-opt', write_options(reference, tmp_path / 'ddp_reference.yml'), '--launcher', 'pytorch'],
            cwd=tmp_path, launcher=torchrun())
    assert_identical(experiment, tmp_path / 'experiments' / 'ddp_reference')


def test_a_full_disk_skips_that_save_and_a_lost_final_save_fails_the_run(demo_data, tmp_path):
    opt = kill_options(demo_data, 'full', total_iter=12)
    result = run_cli(['train', '-opt', write_options(opt, tmp_path / 'full.yml')], cwd=tmp_path, check=False,
                     env={FAULT_HOOK: 'ENOSPC:8.state,net_g_latest.pth'})
    experiment = tmp_path / 'experiments' / 'full'
    assert result.returncode == 1, result.stderr[-3000:]
    assert (f'Could not save {experiment}/training_states/8.state: [Errno 28] No space left on device; the '
            'checkpoint of this iteration will not count; training goes on.') in result.stderr
    assert result.stderr.strip().splitlines()[-1] == (
        f'basicsr train: training finished, but its final networks could not be saved ({experiment}/models/'
        f'net_g_latest.pth: No space left on device); the newest complete checkpoint is {experiment}/'
        'training_states/12.state')
    assert sorted(p.name for p in (experiment / 'training_states').iterdir()) == [
        '12.state', '12_rng.pth', '4.state', '4_rng.pth']
    assert sorted(p.name for p in (experiment / 'models').iterdir()) == ['net_g_12.pth', 'net_g_4.pth']
    for iteration in (4, 12):
        assert checkpoint_sets.check_set(str(experiment / 'training_states' / f'{iteration}.state'))[1] == []


def test_a_stop_signal_whose_checkpoint_cannot_be_saved_says_so(demo_data, tmp_path):
    opt = kill_options(demo_data, 'stop_full', total_iter=100000)
    opt['logger']['save_checkpoint_freq'] = 100000
    experiment = tmp_path / 'experiments' / 'stop_full'
    opt_file = write_options(opt, tmp_path / 'stop_full.yml')
    process, output = start(opt_file, tmp_path, env={FAULT_HOOK: 'ENOSPC:*.state'})
    wait_for_iteration(experiment, 3, process)
    process.send_signal(signal.SIGTERM)
    assert process.wait(timeout=120) == 128 + signal.SIGTERM
    last = Path(output).read_text().strip().splitlines()[-1]
    assert re.fullmatch(rf'basicsr train: stopped by SIGTERM at iteration (\d+), but its checkpoint could not be saved '
                        rf'\({experiment}/training_states/\1\.state: No space left on device\); --auto_resume '
                        r'continues from the newest complete one', last), last
    assert list((experiment / 'training_states').glob('*.state*')) == []


def test_twenty_sigkills_at_random_moments_end_identical(demo_data, tmp_path):
    total = 120
    opt = kill_options(demo_data, 'soak', total_iter=total)
    opt['logger'].update(save_checkpoint_freq=1, print_freq=10)  # a write at every iteration
    opt_file = write_options(opt, tmp_path / 'soak.yml')
    rng = random.Random(30)
    kills = 0
    while kills < 20:
        process, output = start(opt_file, tmp_path, extra=['--auto_resume'])
        # a random moment from start-up (loading, resuming) to a few iterations into training
        wait_for(lambda: 'Start training from epoch' in Path(output).read_text() or process.poll() is not None,
                 process, 'training', timeout=120) if rng.random() < 0.8 else time.sleep(rng.uniform(0.5, 3))
        time.sleep(rng.uniform(0, 0.3))
        if process.poll() is not None:
            assert process.returncode == 0, Path(output).read_text()[-3000:]
            break
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()
        kills += 1
    assert kills == 20, f'the run finished after {kills} kills: raise total'
    outputs = ''.join(p.read_text() for p in tmp_path.glob('soak_*.out'))
    assert '--auto_resume removed' in outputs or '--auto_resume steps over' in outputs, 'no kill hit a save'
    result = run_cli(['train', '-opt', opt_file, '--auto_resume'], cwd=tmp_path)
    reference = dict(opt, name='soak_reference')
    run_cli(['train', '-opt', write_options(reference, tmp_path / 'soak_reference.yml')], cwd=tmp_path)
    assert_identical(tmp_path / 'experiments' / 'soak', tmp_path / 'experiments' / 'soak_reference')
    assert 'Resuming training from iter' in training_log(tmp_path / 'experiments' / 'soak'), result.stderr[-2000:]
