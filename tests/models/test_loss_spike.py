"""``train.loss_spike``: a finite blow-up of the loss is detected and rewound, warned about or stopped on.

The spike is made deterministic with BasicSR's own scheduler: ``MultiStepRestartLR`` restarts the learning rate at
100 x its base after iteration JUMP and a milestone three iterations later brings it back. Without the policy the
tiny EDSR's loss goes 10-30x up and the run ends several dB below the runs that never spiked; the rewound run ends
within their seed spread.
"""
import math
import re
from pathlib import Path

import pytest
import torch
from conftest import PYTHON, free_port, load_params, run_cli, tiny_options, training_log, write_options

from losses_plugin.checks import OptionError
from losses_plugin.models.loss_spike import SpikeDetector, _read_options, watched_loss

JUMP, TOTAL = 40, 100
POLICY = {'window': 5, 'warmup': 20, 'snapshot_every': 5}
# the first 5-iteration mean above 3x the lowest: iteration 44 in these runs (measured), from the snapshot of 35
DETECTED, RESTORED = 44, 35


def test_the_detector_by_hand():
    detector = SpikeDetector(window=2, factor=3, warmup=2)
    means = [detector.add(i, v) for i, v in enumerate([1.0, 1.0, 0.5, 0.5, 1.4, math.nan, 2.0], start=1)]
    # iter 2 is warm-up; means 0.75 (lowest), 0.5 (lowest), 0.95 (< 1.5), NaN skipped, then (1.4 + 2.0) / 2 > 3 x 0.5
    assert means == [None, None, None, None, None, None, 1.7] and detector.lowest == 0.5
    detector.restart_window()
    assert detector.add(8, 9.0) is None and detector.lowest == 0.5  # a new window fills first


def test_the_watched_total():
    assert watched_loss({'l_total': 2.0, 'l_pix': 1.0}, 'total') == 2.0
    assert watched_loss({'l_pix': 1.0, 'l_percep': 0.5, 'l_w': -3.0}, 'total') == 1.5  # TLW's l_w is net_w's
    assert watched_loss({'l_pix': 1.0, 'l_w': -3.0}, 'l_w') == -3.0
    assert watched_loss({'wc': 1.0}, 'total') is None


@pytest.mark.parametrize('opt, message', [
    ('rewind', "train.loss_spike: expected a mapping of action, key, window, factor, warmup, snapshot_every, "
               "max_rewinds, lr_factor, lr_iters, got 'rewind'"),
    ({'windw': 5}, 'train.loss_spike: unknown key(s) windw; known: action, key, window, factor, warmup, '
                   'snapshot_every, max_rewinds, lr_factor, lr_iters'),
    ({'action': 'rewnd'}, "train.loss_spike.action: expected one of warn, stop, rewind, got 'rewnd'"),
    ({'window': 0}, 'train.loss_spike.window: expected an integer >= 1, got 0'),
    ({'snapshot_every': 2.5}, 'train.loss_spike.snapshot_every: expected an integer >= 1, got 2.5'),
    ({'max_rewinds': True}, 'train.loss_spike.max_rewinds: expected an integer >= 0, got True'),
    ({'factor': 1}, 'train.loss_spike.factor: expected a number > 1, got 1'),
    ({'lr_factor': 0}, 'train.loss_spike.lr_factor: expected a number in (0, 1], got 0'),
    ({'lr_factor': 1.5}, 'train.loss_spike.lr_factor: expected a number in (0, 1], got 1.5'),
    ({'windw': 5, 'factr': 2}, 'train.loss_spike: unknown key(s) factr, windw; known: action, key, window, factor, '
                               'warmup, snapshot_every, max_rewinds, lr_factor, lr_iters'),
    ({'key': 3}, "train.loss_spike.key: expected a logged loss name or 'total', got 3"),
])
def test_bad_options_are_one_line_errors(opt, message):
    with pytest.raises(OptionError, match=f'^{re.escape(message)}$'):
        _read_options(opt)


def spiking_options(demo_data, name, policy=None, jump=True, seed=10, total=TOTAL):
    opt = tiny_options(demo_data, name, total_iter=total)
    opt['manual_seed'] = seed
    if jump:
        opt['train']['scheduler'] = {'type': 'MultiStepRestartLR', 'milestones': [JUMP + 3], 'gamma': 0.01,
                                     'restarts': [JUMP], 'restart_weights': [100]}
    if policy is not None:
        opt['train']['loss_spike'] = policy
    return opt


def train(tmp_path, opt, *extra, check=True):
    result = run_cli(['train', '-opt', write_options(opt, tmp_path / f"{opt['name']}.yml"), *extra], cwd=tmp_path,
                     check=check)
    return result, training_log(tmp_path / 'experiments' / opt['name'])


def losses(log):
    """l_pix of every iteration (print_freq 1), in order."""
    return [float(v) for v in re.findall(r'l_pix: ([-+\d.e]+)', log)]


def final_loss(log, last=20):
    return sum(losses(log)[-last:]) / last


def psnr(log):
    return float(re.findall(r'# psnr: ([\d.]+)', log)[-1])


@pytest.fixture(scope='module')
def never_spiked(demo_data, tmp_path_factory):
    """Three seeds without the jump: the spread the rewound run must end within (the mean loss of the last 20
    iterations, the validation PSNR). At 100 iterations of this tiny EDSR, PSNR varies by 0.5-5 dB between seeds."""
    folder = tmp_path_factory.mktemp('never_spiked')
    logs = [train(folder, spiking_options(demo_data, f'plain{seed}', jump=False, seed=seed))[1]
            for seed in (10, 11, 12)]
    return [final_loss(log) for log in logs], [psnr(log) for log in logs]


def within_spread(value, seeds):
    spread = max(seeds) - min(seeds)
    return min(seeds) - spread <= value <= max(seeds) + spread


@pytest.mark.slow
def test_a_rewound_spike_ends_within_the_seed_spread_of_runs_that_never_spiked(demo_data, tmp_path, never_spiked):
    losses, psnrs = never_spiked
    _, spiked = train(tmp_path, spiking_options(demo_data, 'spiked'))
    _, rewound = train(tmp_path, spiking_options(demo_data, 'rewound', POLICY))
    assert not within_spread(final_loss(spiked), losses) and not within_spread(psnr(spiked), psnrs)  # it ruins a run
    assert within_spread(final_loss(rewound), losses) and within_spread(psnr(rewound), psnrs)
    assert (f'WARNING: iteration {DETECTED}: loss spike: the moving mean of l_pix over 5 iterations, ' in rewound and
            f'is above 3 x its lowest, ' in rewound and f'restored net_g, the optimiser states of iteration {RESTORED} '
            f'(in memory); the batches of iterations {RESTORED + 1}-{DETECTED} are not replayed (rewind 1 of 3)'
            in rewound)
    assert rewound.count('loss spike') == 1


@pytest.mark.slow
def test_resume_after_a_rewind_and_between_jump_and_detection_is_exact(demo_data, tmp_path):
    """Stopped at 42 (after the jump, before the detection: the rewind then needs the snapshot of 35 from the
    training state) and at 60 (after the rewind), each resumed to the end: the weights of the uninterrupted run."""
    whole = spiking_options(demo_data, 'whole', POLICY)
    train(tmp_path, whole)
    expected = load_params(tmp_path / 'experiments' / 'whole' / 'models' / 'net_g_latest.pth')
    for stop in (JUMP + 2, 60):
        name = f'stopped{stop}'
        first = spiking_options(demo_data, name, POLICY, total=stop)
        first['logger']['save_checkpoint_freq'] = stop
        train(tmp_path, first)
        _, log = train(tmp_path, spiking_options(demo_data, name, POLICY), '--auto_resume')
        assert f'Resuming training from iter: {stop}.' in log and log.count('loss spike') == 1
        resumed = load_params(tmp_path / 'experiments' / name / 'models' / 'net_g_latest.pth')
        assert all(torch.equal(resumed[k], expected[k]) for k in expected), stop


@pytest.mark.slow
def test_warn_changes_nothing_and_stop_saves_the_state_before_the_spike(demo_data, tmp_path):
    plain = spiking_options(demo_data, 'plain')
    plain['logger']['save_checkpoint_freq'] = RESTORED
    train(tmp_path, plain)
    _, warned = train(tmp_path, spiking_options(demo_data, 'warned', dict(POLICY, action='warn')))
    assert warned.count('loss spike') == 1 and f'WARNING: iteration {DETECTED}: loss spike: ' in warned
    assert 'training goes on (action: warn)' in warned
    final = {name: load_params(tmp_path / 'experiments' / name / 'models' / 'net_g_latest.pth')
             for name in ('plain', 'warned')}
    assert all(torch.equal(final['plain'][k], final['warned'][k]) for k in final['plain'])

    result, _ = train(tmp_path, spiking_options(demo_data, 'stopped', dict(POLICY, action='stop')), check=False)
    assert result.returncode == 1
    message = result.stderr.strip().splitlines()[-1]
    assert message.startswith(f'basicsr train: iteration {DETECTED}: loss spike: the moving mean of l_pix over 5 '
                              'iterations, ')
    assert message.endswith(f'restored net_g, the optimiser states of iteration {RESTORED} (in memory); the batches '
                            f'of iterations {RESTORED + 1}-{DETECTED} are not replayed; training stopped. Lower the '
                            'learning rate, set train.grad_clip, or change train.loss_spike. The restored state is '
                            f'saved as iteration {DETECTED}; --auto_resume continues from it.')
    saved = load_params(tmp_path / 'experiments' / 'stopped' / 'models' / f'net_g_{DETECTED}.pth')
    before = load_params(tmp_path / 'experiments' / 'plain' / 'models' / f'net_g_{RESTORED}.pth')
    assert all(torch.equal(saved[k], before[k]) for k in before)
    assert (tmp_path / 'experiments' / 'stopped' / 'training_states' / f'{DETECTED}.state').is_file()


@pytest.mark.slow
def test_after_max_rewinds_it_stops(demo_data, tmp_path):
    result, log = train(tmp_path, spiking_options(demo_data, 'limited', dict(POLICY, max_rewinds=0)), check=False)
    assert result.returncode == 1 and 'training stopped after 0 rewinds (train.loss_spike.max_rewinds)' in result.stderr


@pytest.mark.slow
def test_a_lowered_learning_rate_after_the_rewind_reaches_the_steps(demo_data, tmp_path):
    """lr_factor 0.5 for 10 iterations: those steps differ from the plain rewind's, the logged rates do not."""
    _, plain = train(tmp_path, spiking_options(demo_data, 'rewound', POLICY))
    _, lowered = train(tmp_path, spiking_options(demo_data, 'lowered', dict(POLICY, lr_factor=0.5, lr_iters=10)))
    assert f'steps use 0.5 x the learning rates until iteration {DETECTED + 10} (rewind 1 of 3)' in lowered
    # iteration k is losses[k - 1]: equal up to the rewind, then the first step with the lowered rates differs
    assert losses(plain)[:DETECTED + 1] == losses(lowered)[:DETECTED + 1]
    assert losses(plain)[DETECTED + 1] != losses(lowered)[DETECTED + 1]
    rates = re.findall(r'iter: +(\d+), lr:\(([\d.e+-]+),\)', lowered)
    assert {float(lr) for it, lr in rates if DETECTED < int(it) <= DETECTED + 10} == {1e-3}


@pytest.mark.slow
def test_every_rank_rewinds_alike_under_torchrun(demo_data, tmp_path):
    opt = spiking_options(demo_data, 'ddp', POLICY)
    result = run_cli(['train', '-opt', write_options(opt, tmp_path / 'ddp.yml'), '--launcher', 'pytorch'], cwd=tmp_path,
                     launcher=[str(Path(PYTHON).parent / 'torchrun'), '--nproc_per_node=2',
                               f'--master_port={free_port()}'], timeout=300)
    log = training_log(tmp_path / 'experiments' / 'ddp')
    assert log.count('loss spike') == 1 and '(rewind 1 of 3)' in log, result.stderr[-2000:]
    assert re.search(r'net_g parameters identical on all 2 ranks', log)


def test_a_restore_takes_every_network_and_optimiser_state_back_and_keeps_the_schedules_rates(tmp_path):
    """TLWModel: net_g, net_w, net_g_ema and both Adams come back from the snapshot; the learning rates stay
    those of now (a milestone passed between snapshot and spike would otherwise be undone for good)."""
    import copy

    from basicsr.models import build_model
    from test_amp import options

    opt = options(tmp_path, 'TLWModel')
    opt['train'].update(ema_decay=0.5, loss_spike=dict(POLICY, warmup=0))
    model = build_model(opt)
    batch = {'lq': torch.rand(2, 3, 16, 16), 'gt': torch.rand(2, 3, 32, 32)}

    def step(iteration):
        model.update_learning_rate(iteration)
        model.feed_data(batch)
        model.optimize_parameters(iteration)

    step(1)
    policy = model.step_guard.loss_spike
    snapshot = policy._capture()
    then = {name: copy.deepcopy(net.state_dict()) for name, net in policy._networks().items()}
    moments = [copy.deepcopy(o.state_dict()['state']) for o in model.optimizers]
    for iteration in (2, 3):
        step(iteration)
    for optimizer in model.optimizers:
        for group in optimizer.param_groups:
            group['lr'] = 0.25  # the schedule moved on
    assert set(then) == {'net_g', 'net_g_ema', 'net_w'}
    assert not torch.equal(then['net_w']['body.0.weight'], model.net_w.state_dict()['body.0.weight'])
    policy._load(snapshot)
    for name, net in policy._networks().items():
        assert all(torch.equal(then[name][k], v) for k, v in net.state_dict().items()), name
    for optimizer, before in zip(model.optimizers, moments):
        state = optimizer.state_dict()['state']
        assert all(torch.equal(before[i]['exp_avg'], state[i]['exp_avg']) for i in before)
        assert {group['lr'] for group in optimizer.param_groups} == {0.25}


@pytest.mark.parametrize('key, message', [
    ('l_pixx', "train.loss_spike.key: TLWModel logs no 'l_pixx'; it logs l_pix, l_w, wc, k"),
    ('wc', None),  # a logged name is watched
])
def test_a_key_the_model_does_not_log_is_an_error_at_the_first_test(tmp_path, key, message):
    from basicsr.models import build_model
    from test_amp import options

    opt = options(tmp_path, 'TLWModel')
    opt['train']['loss_spike'] = dict(POLICY, key=key)
    model = build_model(opt)
    model.update_learning_rate(1)  # nothing logged yet: nothing to check
    model.feed_data({'lq': torch.rand(2, 3, 16, 16), 'gt': torch.rand(2, 3, 32, 32)})
    model.optimize_parameters(1)
    if message is None:
        model.update_learning_rate(2)
        assert model.step_guard.loss_spike.detector.values == [pytest.approx(model.get_current_log()['wc'])]
        return
    with pytest.raises(OptionError, match=f'^{re.escape(message)}$'):
        model.update_learning_rate(2)


class ScriptedRun:
    """A real SRModel whose logged loss is scripted: each iteration steps for real (weights and Adam moments move),
    then ``log_dict`` says ``loss(i)``; the policy runs in ``update_learning_rate`` as in a training loop."""

    def __init__(self, tmp_path, loss, amp=None, **policy):
        from basicsr.models import build_model
        from test_amp import options

        opt = options(tmp_path, 'SRModel', amp)
        opt['train'].update(ema_decay=0.5, loss_spike=dict(POLICY, **policy))
        torch.manual_seed(0)
        self.model, self.loss = build_model(opt), loss
        self.policy = self.model.step_guard.loss_spike
        self.batch = {'lq': torch.rand(2, 3, 16, 16), 'gt': torch.rand(2, 3, 32, 32)}
        self.weights = {}  # iteration -> net_g's weights after its step
        self.moments = {}

    def run(self, first, last):
        """Iterations ``first``..``last``: the policy's test, then the step."""
        for i in range(first, last + 1):
            self.model.update_learning_rate(i)
            self.step(i)

    def step(self, i):
        self.model.feed_data(self.batch)
        self.model.optimize_parameters(i)
        self.model.log_dict = {'l_pix': self.loss(i)}
        self.weights[i] = {k: v.clone() for k, v in self.model.net_g.state_dict().items()}
        self.moments[i] = self.model.optimizer_g.state_dict()['state'][0]['exp_avg'].clone()

    def holds(self, i):
        """net_g's weights and Adam's first moment are those after iteration ``i``'s step."""
        now = self.model.net_g.state_dict()
        return (all(torch.equal(now[k], v) for k, v in self.weights[i].items())
                and torch.equal(self.model.optimizer_g.state_dict()['state'][0]['exp_avg'], self.moments[i]))


def jump_at(iteration, low=0.1, high=1.0):
    return lambda i: high if i > iteration else low


def test_a_scripted_spike_is_rewound_to_the_snapshot_a_window_back_then_stopped_after_max_rewinds(tmp_path):
    """Loss 0.1, then 1.0 from iteration 41: the 5-mean passes 3 x 0.1 once two values are 1.0 (done = 42, tested
    at iteration 43); snapshots every 5 (two kept): the newest at or before 42 - 5 is 35."""
    from conftest import basicsr_warnings

    from losses_plugin.models.loss_spike import LossSpikeStop

    run = ScriptedRun(tmp_path, jump_at(40))
    with basicsr_warnings() as warnings:
        run.run(1, 42)
        assert run.policy.rewinds == 0 and [s[0] for s in run.policy.snapshots] == [35, 40]
        lr = run.model.optimizer_g.param_groups[0]['lr']
        run.model.update_learning_rate(43)
    assert run.holds(35) and run.policy.rewinds == 1 and run.policy.detector.values == []
    assert [s[0] for s in run.policy.snapshots] == [35] and run.model.optimizer_g.param_groups[0]['lr'] == lr
    ema = run.model.net_g_ema.state_dict()
    assert all(torch.equal(ema[k], run.policy.snapshots[0][1]['networks']['net_g_ema'][k]) for k in ema)
    assert warnings == ['iteration 42: loss spike: the moving mean of l_pix over 5 iterations, 0.46, is above 3 x its '
                        'lowest, 0.1 (train.loss_spike); restored net_g, net_g_ema, the optimiser states of iteration '
                        '35 (in memory); the batches of iterations 36-42 are not replayed (rewind 1 of 3)']
    # the loss stays up: each refilled window (43-47, 48-52) is a spike again, back to 35 each time (the snapshot
    # of 45 is after the spike's start); the fourth (53-57) stops: 3 rewinds were allowed
    run.step(43)
    with basicsr_warnings() as warnings, pytest.raises(LossSpikeStop, match=(
            r'^iteration 57: loss spike: .* restored net_g, net_g_ema, the optimiser states of iteration 35 .*; '
            r'training stopped after 3 rewinds \(train.loss_spike.max_rewinds\)\. Lower the learning rate')):
        run.run(44, 60)
    assert [w.split(':')[0] for w in warnings] == ['iteration 47', 'iteration 52']
    assert all('restored net_g, net_g_ema, the optimiser states of iteration 35' in w for w in warnings)
    assert run.policy.rewinds == 3 and run.holds(35)


def test_warn_restores_nothing_and_warns_again_only_after_the_loss_came_back(tmp_path):
    from conftest import basicsr_warnings

    calm_again = lambda i: 1.0 if 40 < i <= 50 or i > 70 else 0.1  # noqa: E731
    run = ScriptedRun(tmp_path, calm_again, action='warn')
    with basicsr_warnings() as warnings:
        run.run(1, 80)
    assert run.policy.snapshots == [] and run.policy.rewinds == 0 and run.holds(80)
    assert [w.split(':')[0] for w in warnings] == ['iteration 42', 'iteration 72']
    assert all(w.endswith('training goes on (action: warn)') for w in warnings)


def test_stop_restores_the_snapshot_and_says_so(tmp_path):
    from losses_plugin.models.loss_spike import LossSpikeStop

    run = ScriptedRun(tmp_path, jump_at(40), action='stop')
    run.run(1, 42)
    with pytest.raises(LossSpikeStop, match=r'restored net_g, net_g_ema, the optimiser states of iteration 35 .*; '
                                            r'training stopped\. Lower'):
        run.model.update_learning_rate(43)
    assert run.holds(35)


def test_no_spike_before_warmup_or_a_full_window_and_none_below_the_factor(tmp_path):
    run = ScriptedRun(tmp_path, lambda i: 1.0 if i <= 20 else (0.1 if i <= 40 else 0.29))  # 2.9 x the lowest
    run.run(1, 60)
    assert run.policy.rewinds == 0 and run.holds(60) and run.policy.detector.lowest == pytest.approx(0.1)


def test_the_lowered_rates_reach_lr_iters_steps_and_the_schedule_keeps_its_own(tmp_path, monkeypatch):
    run = ScriptedRun(tmp_path, jump_at(40), lr_factor=0.25, lr_iters=3)
    run.run(1, 42)
    run.model.update_learning_rate(43)
    used, step = [], run.model.optimizer_g.step

    def recording_step(*args, **kwargs):
        used.append(run.model.optimizer_g.param_groups[0]['lr'])
        return step(*args, **kwargs)

    monkeypatch.setattr(run.model.optimizer_g, 'step', recording_step)
    lr = run.model.optimizer_g.param_groups[0]['lr']
    run.model.log_dict = {'l_pix': 0.1}
    for i in range(43, 48):
        run.model.feed_data(run.batch)
        run.model.optimize_parameters(i)
        run.model.log_dict = {'l_pix': 0.1}
        run.model.update_learning_rate(i + 1)
    assert used == [lr * 0.25] * 3 + [lr] * 2 and run.model.optimizer_g.param_groups[0]['lr'] == lr


def test_the_policy_state_round_trips_through_a_training_state(tmp_path):
    """What a checkpoint keeps (detector window, lowest mean, rewinds, warned, lowered-rate end, snapshots) comes
    back into a fresh model's policy, through torch.save and a weights_only load as the training state is read."""
    import io

    run = ScriptedRun(tmp_path, jump_at(40), lr_factor=0.5, lr_iters=4)
    run.run(1, 42)
    run.model.update_learning_rate(43)
    state = run.model.step_guard.state_dict()
    buffer = io.BytesIO()
    torch.save(state, buffer)
    buffer.seek(0)
    loaded = torch.load(buffer, weights_only=True)
    other = ScriptedRun(tmp_path, jump_at(40), lr_factor=0.5, lr_iters=4)
    other.model.step_guard.load_state_dict(loaded)
    a, b = run.policy, other.policy
    assert (b.detector.values, b.detector.lowest, b.rewinds, b.warned, b.lower_lr_until) == (
        a.detector.values, a.detector.lowest, 1, False, 46)
    assert [s[0] for s in b.snapshots] == [35]
    saved = b.snapshots[0][1]['networks']['net_g']
    assert all(torch.equal(saved[k], v) for k, v in run.weights[35].items())


def test_the_restored_snapshot_is_the_newest_a_window_back_not_the_oldest_kept(tmp_path):
    """Window 6, a snapshot every 3 (three kept): the spike is found at done = 42 with snapshots 33, 36 and 39;
    36 = 42 - 6 is restored (33 is older than needed, 39 lies inside the window that holds the spike's start)."""
    run = ScriptedRun(tmp_path, jump_at(40), window=6, snapshot_every=3)
    run.run(1, 42)
    assert [s[0] for s in run.policy.snapshots] == [33, 36, 39]
    run.model.update_learning_rate(43)
    assert run.policy.rewinds == 1 and run.holds(36) and [s[0] for s in run.policy.snapshots] == [33, 36]


def test_without_a_snapshot_a_rewind_says_the_weights_stay_as_they_are(tmp_path):
    """E.g. resumed from a checkpoint saved before the policy was switched on, spiking before its first snapshot."""
    from conftest import basicsr_warnings

    run = ScriptedRun(tmp_path, jump_at(40))
    run.run(1, 42)
    run.policy.snapshots = []
    with basicsr_warnings() as warnings:
        run.model.update_learning_rate(43)
    assert run.holds(42) and run.policy.rewinds == 1
    assert warnings[0].endswith('(train.loss_spike); no snapshot to restore yet, the weights are as the spike left '
                                'them (rewind 1 of 3)')


@pytest.mark.parametrize('lr_factor, lr_iters, lowered', [(1.0, 3, False), (0.5, 0, False), (0.5, 3, True)])
def test_rates_are_lowered_only_by_a_factor_below_one_for_some_iterations(tmp_path, lr_factor, lr_iters, lowered):
    from conftest import basicsr_warnings

    run = ScriptedRun(tmp_path, jump_at(40), lr_factor=lr_factor, lr_iters=lr_iters)
    run.run(1, 42)
    with basicsr_warnings() as warnings:
        run.model.update_learning_rate(43)
    assert run.policy.lower_lr_until == (45 if lowered else 0)
    assert warnings[0].endswith('; steps use 0.5 x the learning rates until iteration 45 (rewind 1 of 3)' if lowered
                                else 'are not replayed (rewind 1 of 3)')


def test_the_warning_names_the_watched_losses_and_a_mean_only_rank_0_knows():
    from losses_plugin.models.loss_spike import LossSpikePolicy

    policy = LossSpikePolicy.__new__(LossSpikePolicy)
    policy.key = 'total'
    assert policy._key_name({'l_total': 1.0, 'l_pix': 1.0}) == 'l_total'
    assert policy._key_name({'l_style': 1.0, 'l_w': 1.0, 'l_pix': 1.0}) == 'l_pix + l_style'
    policy.key = 'l_w'
    assert policy._key_name({'l_w': 1.0}) == 'l_w'
    assert LossSpikePolicy._number(None) == 'unknown (rank 0 decides)'
    assert LossSpikePolicy._number(0.123456) == '0.1235'


def test_a_rewind_under_float16_restores_the_gradscalers_and_says_so(tmp_path):
    from conftest import basicsr_warnings

    run = ScriptedRun(tmp_path, jump_at(40), amp='float16')
    run.run(1, 42)
    scaler = run.model.step_guard.scalers['net_g']
    then = run.policy.snapshots[0][1]['scalers']['net_g']['scale']
    scaler.update(1234.0)  # a scale the snapshot of 35 does not have
    with basicsr_warnings() as warnings:
        run.model.update_learning_rate(43)
    assert scaler.get_scale() == then != 1234.0
    assert 'restored net_g, net_g_ema, the optimiser states and GradScalers of iteration 35 (in memory)' in warnings[0]


def test_a_policy_switched_off_on_resume_ignores_the_saved_policy_state(tmp_path):
    from basicsr.models import build_model
    from test_amp import options

    run = ScriptedRun(tmp_path, jump_at(40))
    run.run(1, 10)
    state = run.model.step_guard.state_dict()
    assert 'loss_spike' in state
    plain = build_model(options(tmp_path, 'SRModel'))
    plain.step_guard.load_state_dict(state)
    assert plain.step_guard.loss_spike is None


def test_the_detector_at_its_bounds():
    """No test at the warm-up's last iteration; a mean of exactly factor x the lowest is not a spike."""
    detector = SpikeDetector(window=1, factor=2, warmup=2)
    assert detector.add(2, 1.0) is None and detector.lowest is None
    assert detector.add(3, 0.5) is None and detector.lowest == 0.5
    assert detector.add(4, 1.0) is None
    assert detector.add(5, 1.01) == 1.01


def test_factors_and_rates_inside_their_ranges_are_taken():
    options = _read_options({'factor': 1.5, 'lr_factor': 1.0})
    assert options['factor'] == 1.5 and options['lr_factor'] == 1.0


def test_no_rate_is_lowered_before_any_rewind(tmp_path, monkeypatch):
    run = ScriptedRun(tmp_path, jump_at(40), lr_factor=0.25, lr_iters=3)
    used, step = [], run.model.optimizer_g.step
    monkeypatch.setattr(run.model.optimizer_g, 'step', lambda *a, **k: (
        used.append(run.model.optimizer_g.param_groups[0]['lr']), step(*a, **k))[1])
    run.run(1, 2)
    assert used == [run.model.optimizer_g.param_groups[0]['lr']] * 2


def test_only_rank_0_tests_the_loss(tmp_path):
    """Under DDP only rank 0's log holds the ranks' mean (BasicSR's reduce_loss_dict); the others follow its
    decision (any_rank)."""
    run = ScriptedRun(tmp_path, jump_at(40))
    run.model.opt['rank'] = 1
    run.run(1, 30)
    assert run.policy.detector.values == [] and run.policy.detector.lowest is None


def test_a_total_the_model_does_not_log_names_what_it_logs(tmp_path):
    run = ScriptedRun(tmp_path, jump_at(40))
    run.model.update_learning_rate(1)
    run.model.log_dict = {'wc': 1.0, 'k': 2.0}
    with pytest.raises(OptionError, match=r'^train.loss_spike.key: SRModel logs no l_total, l_pix, l_percep or '
                                          r'l_style; it logs wc, k$'):
        run.model.update_learning_rate(2)


def test_with_no_snapshot_a_window_back_the_oldest_kept_is_restored(tmp_path):
    """A run resumed with a longer window than its snapshots were kept for: as far back as it can go."""
    run = ScriptedRun(tmp_path, jump_at(40))
    run.run(1, 42)
    assert [s[0] for s in run.policy.snapshots] == [35, 40]
    run.policy.window = run.policy.detector.window = 10  # 42 - 10 = 32: no snapshot that old
    run.policy.detector.values = [0.1] * 8 + [1.0] * 2
    run.model.update_learning_rate(43)
    assert run.policy.rewinds == 1 and run.holds(35)
