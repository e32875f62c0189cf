"""``losses_plugin.train.train_pipeline`` run in this process (the CLI tests run it in subprocesses, which
mutation testing cannot see): exact resume mid-epoch and across epochs, validation and checkpoint
frequencies, a stop signal, a loss spike that stops, a final save that fails, and the loop's option errors."""
import errno
import hashlib
import logging
import os
import signal
import sys

import pytest
import torch
from conftest import basicsr_messages, tiny_options, write_options

from losses_plugin import checkpoint_files, checkpoint_sets, train
from losses_plugin.checks import OptionError
from losses_plugin.models.loss_spike import LossSpikeStop


@pytest.fixture
def info_lines():
    """The messages BasicSR's root logger emits at INFO and above during the test."""
    with basicsr_messages() as messages:
        yield messages


def run(tmp_path, monkeypatch, opt, *args):
    """``basicsr train -opt OPT ARGS`` in this process, experiments under ``tmp_path``; returns the model."""
    path = write_options(opt, tmp_path / f"{opt['name']}.yml")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, 'argv', ['train', '-opt', str(path), *args])
    return train.train_pipeline(str(tmp_path))


def weights(tmp_path, name, label='net_g_latest'):
    return torch.load(tmp_path / 'experiments' / name / 'models' / f'{label}.pth', map_location='cpu',
                      weights_only=True)['params']


def assert_same(a, b):
    assert a.keys() == b.keys()
    for key in a:
        assert torch.equal(a[key], b[key]), key


def options(demo_data, name, total_iter, **logger):
    # 6 pictures x enlarge 2 / batch 2: 6 iterations an epoch
    opt = tiny_options(demo_data, name, total_iter=total_iter)
    opt['logger'].update(logger)
    return opt


def test_resume_mid_epoch_and_across_epochs_is_bit_exact(demo_data, tmp_path, monkeypatch, info_lines):
    run(tmp_path, monkeypatch, options(demo_data, 'straight', 9))
    run(tmp_path, monkeypatch, options(demo_data, 'resumed', 4, save_checkpoint_freq=4))
    assert (tmp_path / 'experiments' / 'resumed' / 'training_states' / '4.state').is_file()
    different = weights(tmp_path, 'resumed')
    info_lines.clear()
    run(tmp_path, monkeypatch, options(demo_data, 'resumed', 4, save_checkpoint_freq=4), '--auto_resume',
        '--force_yml', 'train:total_iter=9')
    assert 'Resuming training from iter: 4.' in info_lines
    assert 'Start training from epoch: 0, iter: 4' in info_lines
    assert not [line for line in info_lines if 'An epoch had' in line or 'random-generator' in line]
    assert any('Iterations per epoch: 6; total iterations: 9.' in line for line in info_lines)
    assert_same(weights(tmp_path, 'resumed'), weights(tmp_path, 'straight'))
    assert not all(torch.equal(different[k], weights(tmp_path, 'straight')[k]) for k in different)


def test_resume_at_an_epoch_boundary_is_bit_exact(demo_data, tmp_path, monkeypatch, info_lines):
    run(tmp_path, monkeypatch, options(demo_data, 'straight', 8))
    run(tmp_path, monkeypatch, options(demo_data, 'resumed', 6, save_checkpoint_freq=6))
    info_lines.clear()
    run(tmp_path, monkeypatch, options(demo_data, 'resumed', 6, save_checkpoint_freq=6), '--auto_resume',
        '--force_yml', 'train:total_iter=8')
    assert 'Start training from epoch: 1, iter: 6' in info_lines
    assert_same(weights(tmp_path, 'resumed'), weights(tmp_path, 'straight'))


def test_resume_from_another_experiments_state_reads_its_generators_there(demo_data, tmp_path, monkeypatch, info_lines):
    """``path.resume_state`` naming a state of another experiment folder (e.g. copied from another cluster): its
    networks and generators come from there. (BasicSR makes no folders for a run that resumes: they exist.)"""
    run(tmp_path, monkeypatch, options(demo_data, 'straight', 9))
    run(tmp_path, monkeypatch, options(demo_data, 'first', 4, save_checkpoint_freq=4))
    for folder in ('models', 'training_states', 'visualization'):
        (tmp_path / 'experiments' / 'second' / folder).mkdir(parents=True)
    second = options(demo_data, 'second', 9)
    second['path']['resume_state'] = str(tmp_path / 'experiments' / 'first' / 'training_states' / '4.state')
    run(tmp_path, monkeypatch, second)
    assert 'Resuming training from iter: 4.' in info_lines
    assert not [line for line in info_lines if 'random-generator' in line]  # EDSR draws none: exact either way
    assert_same(weights(tmp_path, 'second'), weights(tmp_path, 'straight'))


def test_restoring_generators_warns_when_none_were_saved_or_the_epoch_length_changed(tmp_path):
    opt = {'path': {'training_states': str(tmp_path), 'experiments_root': str(tmp_path)}, 'dist': False,
           'rank': 0, 'world_size': 1}
    lines = []
    train.restore_random_state(opt, 2, 6, logger_with(lines))
    assert lines == ['No random-generator states saved for iteration 2 with world size 1: resuming with fresh '
                     'generators, so the run will not continue bit-exactly.']
    torch.manual_seed(3)
    train.rng_state.save(opt, 2, 6)
    checkpoint_sets.writer(opt).wait()
    expected = torch.rand(3)
    torch.manual_seed(4)
    lines.clear()
    train.restore_random_state(opt, 2, 6, logger_with(lines))
    assert lines == [] and torch.equal(torch.rand(3), expected)
    train.restore_random_state(opt, 2, 3, logger_with(lines))
    assert lines == ['An epoch had 6 iterations when saved and has 3 now (batch size, world size or data changed): '
                     'the sample order will not continue exactly.']


def test_validation_print_and_checkpoint_frequencies(demo_data, tmp_path, monkeypatch, info_lines):
    opt = options(demo_data, 'freq', 6, save_checkpoint_freq=3, print_freq=2)
    opt['val']['val_freq'] = 2
    calls = []
    built = train.build_model

    def build_model(o):
        model = built(o)
        original = model.validation
        model.validation = lambda loader, current_iter, *a: (calls.append(current_iter), original(loader, current_iter, *a))
        return model

    steps = []

    def build_model_counting(o):
        model = build_model(o)
        step = model.optimize_parameters
        model.optimize_parameters = lambda i: (steps.append(i), step(i))
        return model

    monkeypatch.setattr(train, 'build_model', build_model_counting)
    run(tmp_path, monkeypatch, opt)
    assert steps == [1, 2, 3, 4, 5, 6] and calls == [2, 4, 6, 6]  # every val_freq iterations, then after the end
    # the sets were completed in the background while training went on
    assert checkpoint_sets.writer(opt_with_root(opt, tmp_path)).background is True
    states = tmp_path / 'experiments' / 'freq' / 'training_states'
    assert sorted(p.name for p in states.glob('*.state')) == ['3.state', '6.state']
    assert sorted(p.name for p in states.glob('*_rng.pth')) == ['3_rng.pth', '6_rng.pth']
    assert (tmp_path / 'experiments' / 'freq' / 'models' / 'net_g_latest.pth').is_file()
    logged = [line for line in info_lines if line.startswith('[freq..][epoch:')]
    assert all('] [eta: ' in line and ', time (data): ' in line for line in logged)  # BasicSR's timing fields
    assert [line.split('iter:')[1].split(',')[0].strip() for line in logged] == ['2', '4', '6']
    assert sum(line == 'Saving models and training states.' for line in info_lines) == 2
    assert 'Save the latest model.' in info_lines


@pytest.mark.parametrize('signum', [signal.SIGTERM, signal.SIGINT])
def test_a_stop_signal_saves_that_iteration_and_the_resumed_run_is_exact(demo_data, tmp_path, monkeypatch, signum,
                                                                       info_lines):
    run(tmp_path, monkeypatch, options(demo_data, 'straight', 7))
    built = train.build_model

    def build_model(o):
        model = built(o)
        step = model.optimize_parameters

        def optimize_parameters(current_iter):
            step(current_iter)
            if current_iter == 3:
                os.kill(os.getpid(), signum)
        model.optimize_parameters = optimize_parameters
        return model

    monkeypatch.setattr(train, 'build_model', build_model)
    previous = signal.getsignal(signum)
    with pytest.raises(train.Interrupted) as stopped:
        run(tmp_path, monkeypatch, options(demo_data, 'stopped', 7, save_checkpoint_freq=5))
    assert signal.getsignal(signum) is previous  # the run's handlers are removed again
    state = tmp_path / 'experiments' / 'stopped' / 'training_states' / '3.state'
    assert stopped.value.exit_code == 128 + signum
    assert str(stopped.value) == (f'stopped by {signal.Signals(signum).name} at iteration 3; training state saved '
                                  f'to {state}; continue with --auto_resume')
    assert checkpoint_sets.check_set(str(state))[1] == []
    assert torch.load(state, map_location='cpu', weights_only=False)['epoch'] == 0
    assert torch.load(state.parent / '3_rng.pth', weights_only=True)['iters_per_epoch'] == 6
    assert f'Stopped by {signal.Signals(signum).name}: saved the training state of iteration 3.' in info_lines
    assert not (tmp_path / 'experiments' / 'stopped' / 'models' / 'net_g_latest.pth').exists()
    monkeypatch.setattr(train, 'build_model', built)
    run(tmp_path, monkeypatch, options(demo_data, 'stopped', 7, save_checkpoint_freq=5), '--auto_resume')
    assert_same(weights(tmp_path, 'stopped'), weights(tmp_path, 'straight'))


def test_a_stop_signal_on_a_checkpoint_iteration_saves_it_once(demo_data, tmp_path, monkeypatch):
    built = train.build_model
    saves = []

    def build_model(o):
        model = built(o)
        step, save = model.optimize_parameters, model.save
        model.save = lambda epoch, current_iter: (saves.append(current_iter), save(epoch, current_iter))

        def optimize_parameters(current_iter):
            step(current_iter)
            if current_iter == 2:
                os.kill(os.getpid(), signal.SIGTERM)
        model.optimize_parameters = optimize_parameters
        return model

    monkeypatch.setattr(train, 'build_model', build_model)
    with pytest.raises(train.Interrupted):
        run(tmp_path, monkeypatch, options(demo_data, 'stopped', 7, save_checkpoint_freq=2))
    assert saves == [2]


@pytest.mark.parametrize('name', ['net_g_latest.pth', '2.state'])
def test_a_final_or_stop_checkpoint_that_cannot_be_written_ends_the_run_saying_so(demo_data, tmp_path, monkeypatch,
                                                                                 name):
    write = checkpoint_files.write_temporary

    def full_disk(obj, path):
        if os.path.basename(path) == name:
            raise OSError(errno.ENOSPC, 'No space left on device')
        return write(obj, path)

    monkeypatch.setattr(checkpoint_files, 'write_temporary', full_disk)
    if name == '2.state':
        built = train.build_model

        def build_model(o):
            model = built(o)
            step = model.optimize_parameters
            model.optimize_parameters = lambda i: (step(i), i == 2 and os.kill(os.getpid(), signal.SIGTERM))
            return model
        monkeypatch.setattr(train, 'build_model', build_model)
    with pytest.raises(train.CheckpointNotSaved) as failed:
        run(tmp_path, monkeypatch, options(demo_data, 'full', 3, save_checkpoint_freq=1))
    message = str(failed.value)
    assert 'No space left on device' in message and name in message
    if name == '2.state':
        assert message.startswith('stopped by SIGTERM at iteration 2, but its checkpoint could not be saved (')
        assert message.endswith('--auto_resume continues from the newest complete one')
        assert failed.value.exit_code == 128 + signal.SIGTERM
    else:
        assert message.startswith('training finished, but its final networks could not be saved (')
        states = tmp_path / 'experiments' / 'full' / 'training_states'
        assert message.endswith(f'the newest complete checkpoint is {states / "3.state"}')


def test_a_loss_spike_that_stops_saves_the_restored_state(demo_data, tmp_path, monkeypatch):
    opt = options(demo_data, 'spike', 40)
    opt['train']['scheduler'] = {'type': 'MultiStepLR', 'milestones': [20], 'gamma': 3000.0}
    opt['train']['loss_spike'] = {'action': 'stop', 'window': 4, 'warmup': 4, 'factor': 2, 'snapshot_every': 4}
    with pytest.raises(LossSpikeStop) as stopped:
        run(tmp_path, monkeypatch, opt)
    message = str(stopped.value)
    saved = int(message.split('The restored state is saved as iteration ')[1].split(';')[0])
    assert message.endswith(f'The restored state is saved as iteration {saved}; --auto_resume continues from it.')
    assert 20 < saved < 40
    state = tmp_path / 'experiments' / 'spike' / 'training_states' / f'{saved}.state'
    assert checkpoint_sets.check_set(str(state))[1] == []
    restored = torch.load(state, map_location='cpu', weights_only=False)
    assert restored['iter'] == saved and restored['epoch'] == saved // 6
    assert torch.load(state.parent / f'{saved}_rng.pth', weights_only=True)['iters_per_epoch'] == 6
    # the networks and moments from before the learning-rate jump (its 20th step), a window before the spike; the
    # schedule at the iteration the run goes on from
    assert restored['optimizers'][0]['state'][0]['step'] < 20
    assert restored['schedulers'][0]['last_epoch'] == saved - 1  # BasicSR steps them from iteration 2 on


def test_prefetching_to_cuda_needs_pinned_memory(demo_data, tmp_path, monkeypatch):
    opt = options(demo_data, 'prefetch', 2)
    opt['datasets']['train']['prefetch_mode'] = 'cuda'
    opt['datasets']['train']['pin_memory'] = False
    with pytest.raises(OptionError, match='^datasets.train.pin_memory must be true with prefetch_mode: cuda$'):
        run(tmp_path, monkeypatch, opt)


def test_cpu_prefetching_yields_the_loaders_batches():
    loader = [1, 2, 3]
    for mode in (None, 'cpu'):
        assert list(train.epoch_batches(loader, {'datasets': {'train': {'prefetch_mode': mode}}})) == [1, 2, 3]


def test_a_batch_larger_than_the_data_is_an_option_error(demo_data, tmp_path, monkeypatch):
    opt = options(demo_data, 'large', 2)
    opt['datasets']['train'].update(batch_size_per_gpu=13, dataset_enlarge_ratio=2)
    with pytest.raises(OptionError, match=r'^datasets.train: 12 samples per rank do not fill one batch of 13; '
                                          'lower batch_size_per_gpu or raise dataset_enlarge_ratio$'):
        run(tmp_path, monkeypatch, opt)


def test_a_phase_other_than_train_and_val_is_an_option_error(demo_data, tmp_path, monkeypatch):
    opt = options(demo_data, 'phase', 2)
    opt['datasets']['val_2'] = dict(opt['datasets']['val'], name='second')
    logger = logging.getLogger('basicsr')
    lines = []
    assert len(train.build_val_loaders(opt_for_loaders(opt), logger_with(lines))) == 2
    assert lines == ['Number of val images in ' + opt['datasets']['val']['name'] + ': 2',
                     'Number of val images in second: 2']
    opt['datasets']['test'] = opt['datasets'].pop('val_2')
    with pytest.raises(OptionError, match=r"^datasets.test: training accepts the phases 'train' and 'val', "
                                          r"'val_2', ...$"):
        train.build_val_loaders(opt_for_loaders(opt), logger)


def opt_for_loaders(opt):
    opt = dict(opt, num_gpu=0, dist=False, manual_seed=1)
    opt['datasets'] = {phase: dict(d, phase=phase.split('_')[0], scale=4) for phase, d in opt['datasets'].items()}
    return opt


def logger_with(lines):
    logger = logging.getLogger('test_train_pipeline.val_loaders')
    logger.setLevel(logging.INFO)
    logger.propagate = False
    handler = logging.Handler(logging.INFO)
    handler.emit = lambda record: lines.append(record.getMessage())
    logger.handlers = [handler]
    return logger


def test_state_digest_is_sha256_of_names_and_bytes_without_the_wrapper():
    net = torch.nn.BatchNorm1d(2)
    with torch.no_grad():
        net.weight.copy_(torch.tensor([1.5, -2.0]))
    expected = hashlib.sha256()
    for name in ('weight', 'bias'):
        expected.update(name.encode())
        expected.update(getattr(net, name).detach().numpy().tobytes())
    assert train.state_digest(net) == expected.hexdigest()
    wrapped = torch.nn.Module()
    wrapped.module = net
    assert train.state_digest(wrapped) == expected.hexdigest()
    buffers = hashlib.sha256()
    for name in ('running_mean', 'running_var', 'num_batches_tracked'):
        buffers.update(name.encode())
        buffers.update(getattr(net, name).numpy().tobytes())
    assert train.state_digest(net, 'buffers') == buffers.hexdigest()


def test_ranks_are_compared_per_network_and_kind(monkeypatch):
    class Model:
        net_g = torch.nn.Linear(2, 2)
        net_d = torch.nn.BatchNorm1d(2)

    model = Model()
    mine = {('net_g', 'parameters'): train.state_digest(model.net_g),
            ('net_d', 'parameters'): train.state_digest(model.net_d),
            ('net_d', 'buffers'): train.state_digest(model.net_d, 'buffers')}
    other = dict(mine)
    other['net_g', 'parameters'] = 'f' * 64
    other['net_d', 'buffers'] = 'e' * 64

    def all_gather_object(gathered, digests):
        assert digests == mine
        gathered[:] = [digests, other]

    monkeypatch.setattr(train.dist, 'all_gather_object', all_gather_object)
    monkeypatch.setattr(train, 'model_networks', lambda m: {'net_g': m.net_g, 'net_d': m.net_d})
    lines = []
    logger = logger_with(lines)
    logger.error = lambda message: lines.append('ERROR ' + message)
    train.check_ranks_agree(model, {'world_size': 2}, logger)
    assert lines[0] == f"ERROR net_g parameters differ between ranks: rank 0: {mine['net_g', 'parameters']}, " \
                       f"rank 1: {'f' * 64}"
    assert lines[1] == f"net_d parameters identical on all 2 ranks (sha256 {mine['net_d', 'parameters']})"
    assert lines[2] == ("net_d buffers (e.g. BatchNorm running statistics) differ between ranks, as each rank "
                        "updates them in its last forward pass; the checkpoint holds rank 0's")
    assert len(lines) == 3


def test_what_is_said_before_the_log_file_exists_is_held_or_printed_if_the_run_stops(monkeypatch, capsys):
    logger = logging.getLogger('basicsr')
    monkeypatch.setattr(logger, 'handlers', [])  # as in a fresh `basicsr train` process
    with train.held_log_records() as held:
        logger.warning('--auto_resume steps over the checkpoint of iteration 8')
    assert [r.getMessage() for r in held] == ['--auto_resume steps over the checkpoint of iteration 8']
    assert capsys.readouterr().err == '' and logger.handlers == []
    with pytest.raises(OptionError), train.held_log_records():
        logger.warning('--auto_resume removed a temporary file')
        raise OptionError('path.resume_state: ...')
    assert capsys.readouterr().err == '--auto_resume removed a temporary file\n' and logger.handlers == []
    monkeypatch.setattr(logger, 'handlers', [logging.NullHandler()])
    with train.held_log_records() as held:
        logger.warning('logged as it goes')
    assert held == []


def test_a_rank_that_received_no_signal_stops_with_the_one_that_did(monkeypatch):
    stop = train.StopSignals()
    seen = []
    monkeypatch.setattr(train, 'any_rank', lambda flag, device: seen.append((flag, device)) or True)
    assert stop.agreed('the device') == signal.SIGTERM and seen == [(0, 'the device')]
    stop.received = signal.SIGINT
    assert stop.agreed('the device') == signal.SIGINT
    monkeypatch.setattr(train, 'any_rank', lambda flag, device: False)
    assert stop.agreed('the device') == 0


def test_a_checkpoint_records_its_epoch_and_the_epoch_length(demo_data, tmp_path, monkeypatch):
    run(tmp_path, monkeypatch, options(demo_data, 'epochs', 8, save_checkpoint_freq=8))
    states = tmp_path / 'experiments' / 'epochs' / 'training_states'
    state = torch.load(states / '8.state', map_location='cpu', weights_only=False)
    assert (state['epoch'], state['iter']) == (1, 8)  # 6 iterations an epoch
    assert torch.load(states / '8_rng.pth', weights_only=True)['iters_per_epoch'] == 6


@pytest.fixture
def fresh_logger(monkeypatch):
    """Makes BasicSR's root logger as a new `basicsr train` process finds it, so the next run opens its own log
    file (a function: call it again before each run)."""
    from basicsr.utils import logger as basicsr_logger

    logger = logging.getLogger('basicsr')
    monkeypatch.setattr(logger, 'level', logger.level)
    monkeypatch.setattr(logger, 'propagate', logger.propagate)

    def reset():
        monkeypatch.setattr(basicsr_logger, 'initialized_logger', {})
        monkeypatch.setattr(logger, 'handlers', [])

    reset()
    return reset


def test_the_log_file_holds_the_versions_the_options_and_what_resuming_said(demo_data, tmp_path, monkeypatch,
                                                                           fresh_logger):
    def log_text():  # the run's one log file, read and removed (two runs in a second would share a name)
        [log] = experiment.glob('train_logged_*.log')
        text = log.read_text()
        log.unlink()
        return text

    experiment = tmp_path / 'experiments' / 'logged'
    run(tmp_path, monkeypatch, options(demo_data, 'logged', 8, save_checkpoint_freq=4))
    first = log_text()
    (experiment / 'training_states' / '8.state').unlink()  # networks of 8 without their state
    fresh_logger()
    run(tmp_path, monkeypatch, options(demo_data, 'logged', 8, save_checkpoint_freq=4), '--auto_resume')
    resumed = log_text()
    assert 'Version Information: \n\tBasicSR: 1.4.2' in first and 'name: logged' in first
    assert 'Resuming training from iter: 4.' in resumed
    assert ('WARNING: --auto_resume steps over the checkpoint of iteration 8: '
            f'{experiment}/models/net_g_8.pth is there without the training state of its iteration') in resumed


def test_tensorboard_logs_under_the_root_and_an_old_folder_is_archived(demo_data, tmp_path, monkeypatch):
    old = tmp_path / 'tb_logger' / 'tb'
    old.mkdir(parents=True)
    (old / 'an old run').write_text('')
    opt = options(demo_data, 'tb', 2, use_tb_logger=True)
    run(tmp_path, monkeypatch, opt)
    assert list((tmp_path / 'tb_logger' / 'tb').glob('events.out.tfevents.*'))
    archived = list((tmp_path / 'tb_logger').glob('tb_archived_*'))
    assert len(archived) == 1 and (archived[0] / 'an old run').exists()
    assert torch.backends.cudnn.benchmark is True  # as BasicSR's loop: fastest kernels unless train.deterministic
    run(tmp_path, monkeypatch, options(demo_data, 'debug_tb', 2, use_tb_logger=True))
    assert not (tmp_path / 'tb_logger' / 'debug_tb').exists()  # BasicSR's rule: no TensorBoard for debug runs


class FakePrefetcher:
    def __init__(self, loader, opt):
        assert opt['datasets']['train']['prefetch_mode'] == 'cuda'  # it reads the device and batch keys there
        self.batches = iter(loader)

    def next(self):
        return next(self.batches, None)


def test_cuda_prefetching_yields_the_prefetchers_batches(monkeypatch):
    monkeypatch.setattr(train, 'CUDAPrefetcher', FakePrefetcher)
    opt = {'datasets': {'train': {'prefetch_mode': 'cuda', 'pin_memory': True}}}
    assert list(train.epoch_batches([1, 2, 3], opt)) == [1, 2, 3]


def test_stop_signals_restart_interrupted_system_calls_and_restore_the_handlers(monkeypatch):
    calls = []
    monkeypatch.setattr(train.signal, 'siginterrupt', lambda signum, flag: calls.append((signum, flag)))
    before = {s: signal.getsignal(s) for s in train.StopSignals.SIGNALS}
    with train.StopSignals() as stop:
        assert stop.received == 0
        assert all(signal.getsignal(s) == stop._handle for s in train.StopSignals.SIGNALS)
    assert calls == [(signal.SIGTERM, False), (signal.SIGINT, False)]
    assert {s: signal.getsignal(s) for s in train.StopSignals.SIGNALS} == before


def opt_with_root(opt, root):
    return dict(opt, path={'experiments_root': str(root / 'experiments' / opt['name'])})


def test_resume_with_another_epoch_length_warns_in_the_log(demo_data, tmp_path, monkeypatch, info_lines):
    run(tmp_path, monkeypatch, options(demo_data, 'longer', 2, save_checkpoint_freq=2))
    opt = options(demo_data, 'longer', 3, save_checkpoint_freq=2)
    opt['datasets']['train']['dataset_enlarge_ratio'] = 1
    run(tmp_path, monkeypatch, opt, '--auto_resume')
    assert ('An epoch had 6 iterations when saved and has 3 now (batch size, world size or data changed): the sample '
            'order will not continue exactly.') in info_lines


def test_a_state_basicsr_wrote_resumes_from_the_networks_of_its_iteration(demo_data, tmp_path, monkeypatch):
    """A state without the list of its set's files (written before checkpoint sets, or by BasicSR itself): BasicSR's
    check_resume names the networks of its iteration."""
    run(tmp_path, monkeypatch, options(demo_data, 'straight', 6))
    run(tmp_path, monkeypatch, options(demo_data, 'legacy', 3, save_checkpoint_freq=3))
    state_path = tmp_path / 'experiments' / 'legacy' / 'training_states' / '3.state'
    state = torch.load(state_path, map_location='cpu', weights_only=False)
    del state[checkpoint_sets.FILES_KEY]
    torch.save(state, state_path)
    run(tmp_path, monkeypatch, options(demo_data, 'legacy', 3, save_checkpoint_freq=3), '--auto_resume',
        '--force_yml', 'train:total_iter=6')
    assert_same(weights(tmp_path, 'legacy'), weights(tmp_path, 'straight'))


def test_tensorboard_goes_under_the_root_given_not_the_working_directory(demo_data, tmp_path, monkeypatch):
    root = tmp_path / 'root'
    root.mkdir()
    path = write_options(options(demo_data, 'rooted', 1, use_tb_logger=True), tmp_path / 'rooted.yml')
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, 'argv', ['train', '-opt', str(path)])
    train.train_pipeline(str(root))
    assert list((root / 'tb_logger' / 'rooted').glob('events.out.tfevents.*'))
    assert not (tmp_path / 'tb_logger').exists()


def test_warm_up_scales_the_first_rates_and_is_off_without_the_key(demo_data, tmp_path, monkeypatch, info_lines):
    opt = options(demo_data, 'warm', 2)
    opt['train']['warmup_iter'] = 4
    run(tmp_path, monkeypatch, opt)
    rates = [line.split('lr:(')[1].split(',')[0] for line in info_lines if line.startswith('[warm..][epoch:')]
    assert rates == ['2.500e-04', '5.000e-04']  # 1e-3 x 1/4, 2/4
    info_lines.clear()
    opt = options(demo_data, 'cold', 2)
    opt['train'].pop('warmup_iter', None)
    run(tmp_path, monkeypatch, opt)
    assert [line.split('lr:(')[1].split(',')[0] for line in info_lines if line.startswith('[cold..][epoch:')] == [
        '1.000e-03', '1.000e-03']


def test_without_an_enlarge_ratio_an_epoch_is_the_data_once(demo_data, tmp_path, monkeypatch, info_lines):
    opt = options(demo_data, 'once', 1)
    del opt['datasets']['train']['dataset_enlarge_ratio']
    run(tmp_path, monkeypatch, opt)
    assert any('Iterations per epoch: 3; total iterations: 1.' in line for line in info_lines)


def test_the_training_loader_leaves_the_global_generator_alone(demo_data, tmp_path, monkeypatch):
    """Its workers' seeds come from its own generator: the global one (dropout, TLW's samples) is the model's."""
    from basicsr.utils.options import parse_options

    path = write_options(options(demo_data, 'loader', 1), tmp_path / 'loader.yml')
    monkeypatch.setattr(sys, 'argv', ['train', '-opt', str(path)])  # the options as BasicSR completes them
    parsed, _ = parse_options(str(tmp_path), is_train=True)
    loader, sampler = train.build_train_loader(parsed)
    torch.manual_seed(0)
    expected = torch.rand(1)
    torch.manual_seed(0)
    for epoch in range(2):
        sampler.set_epoch(epoch)
        assert len(list(loader)) == 6
    assert torch.equal(torch.rand(1), expected)


def test_a_loss_spike_stop_whose_state_cannot_be_saved_says_so(demo_data, tmp_path, monkeypatch):
    opt = options(demo_data, 'spike_full', 40)
    opt['train']['scheduler'] = {'type': 'MultiStepLR', 'milestones': [20], 'gamma': 3000.0}
    opt['train']['loss_spike'] = {'action': 'stop', 'window': 4, 'warmup': 4, 'factor': 2, 'snapshot_every': 4}
    write = checkpoint_files.write_temporary
    monkeypatch.setattr(checkpoint_files, 'write_temporary', lambda obj, path: (
        write(obj, path) if not path.endswith('.state') else
        (_ for _ in ()).throw(OSError(errno.ENOSPC, 'No space left on device'))))
    with pytest.raises(train.CheckpointNotSaved) as failed:
        run(tmp_path, monkeypatch, opt)
    message = str(failed.value)
    assert message.startswith('iteration ') and ': loss spike: ' in message
    assert message.endswith('.state: No space left on device); --auto_resume continues from the newest complete '
                            'checkpoint.')
    assert ' The restored state could not be saved (' in message


def test_validation_images_metrics_and_weight_maps_reach_tensorboard_and_disk(demo_data, tmp_path, monkeypatch):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    opt = options(demo_data, 'shown', 4, use_tb_logger=True, log_weight_maps=True)
    opt['train']['pixel_opt'] = {'type': 'SPLoss', 'alpha': 2.0}
    opt['val'].update(val_freq=2, save_img=True)
    run(tmp_path, monkeypatch, opt)
    events = EventAccumulator(str(tmp_path / 'tb_logger' / 'shown')).Reload()
    assert {'weight_maps/cri_pix', 'weight_maps/cri_pix_gt'} <= set(events.Tags()['images'])
    assert [e.step for e in events.Images('weight_maps/cri_pix')] == [2, 4]
    assert [e.step for e in events.Scalars('metrics/DemoVal/psnr')] == [2, 4, 4]  # in the loop, then at the end
    assert sorted(p.name for p in (tmp_path / 'experiments' / 'shown' / 'visualization').rglob('*.png')) == [
        'chelsea_2.png', 'chelsea_4.png', 'coffee_2.png', 'coffee_4.png']
