"""`train.grad_clip` and the non-finite policy `train.non_finite` (losses_plugin/models/training_step.py).

A step whose loss or gradient is NaN/Inf is skipped (optimiser, scheduler and EMA untouched) and logged
with the loss term and iteration; more than `max_skips` in a row stop training with one clear line; no
checkpoint ever holds non-finite weights. Checked in real training runs, ours and BasicSR's own loop, with a
loss that turns NaN at chosen iterations.
"""
import copy
import math
import os
import re
import subprocess
import sys
import warnings

import pytest
import torch
from basicsr.models import build_model
from basicsr.utils.registry import LOSS_REGISTRY
from conftest import basicsr_warnings, load_params, tiny_options, training_log, write_options

from losses_plugin.checks import OptionError

# A training entry point with one more registered loss: L1, NaN in value and gradient on calls first..last
# (SRModel calls its pixel loss once per iteration, so calls count iterations of this process).
ENTRY = '''
import sys
import torch
import losses_plugin
from basicsr.utils.registry import LOSS_REGISTRY


@LOSS_REGISTRY.register()
class NaNOnIterations(torch.nn.Module):
    def __init__(self, first, last=10**9):
        super().__init__()
        self.first, self.last, self.calls = first, last, 0

    def forward(self, pred, target):
        self.calls += 1
        loss = (pred - target).abs().mean()
        return loss * float('nan') if self.first <= self.calls <= self.last else loss


if sys.argv[1] == 'basicsr-own-loop':
    import os
    from basicsr.train import train_pipeline
    sys.argv = ['train.py'] + sys.argv[2:]
    train_pipeline(os.getcwd())
else:
    from losses_plugin.cli import main
    sys.exit(main())
'''


def nan_run_options(demo_data, name, first, last, max_skips, **train):
    opt = tiny_options(demo_data, name, total_iter=10, ema_decay=0.5, **train)
    opt['train']['pixel_opt'] = {'type': 'NaNOnIterations', 'first': first, 'last': last}
    opt['train']['non_finite'] = {'max_skips': max_skips}
    opt['train']['scheduler'] = {'type': 'MultiStepLR', 'milestones': [3, 5, 7], 'gamma': 0.5}
    opt['logger']['save_checkpoint_freq'] = 2
    return opt


def run_entry(tmp_path, opt, *args, check=True):
    entry = tmp_path / 'entry.py'
    entry.write_text(ENTRY)
    path = write_options(opt, tmp_path / f"{opt['name']}.yml")
    env = dict(os.environ, OMP_NUM_THREADS='1')
    result = subprocess.run([sys.executable, str(entry), *args, '-opt', str(path)], cwd=tmp_path, env=env,
                            capture_output=True, text=True, timeout=300)
    if check:
        assert result.returncode == 0, result.stderr[-3000:]
    return result


@pytest.mark.slow
def test_nan_from_iteration_5_skips_two_steps_then_stops_with_the_last_good_checkpoint(demo_data, tmp_path):
    opt = nan_run_options(demo_data, 'nan_stop', first=5, last=10**9, max_skips=2)
    result = run_entry(tmp_path, opt, 'train', check=False)
    assert result.returncode == 1
    lines = [line for line in result.stderr.splitlines() if line.startswith('basicsr train:')]
    assert lines == ['basicsr train: iteration 7: skipped the net_g step: non-finite total=nan, l_pix=nan; 3 skipped '
                     'in a row (train.non_finite.max_skips: 2). Training stopped; the last checkpoint holds finite '
                     'weights and resumes. Lower the learning rate, set train.grad_clip, or raise '
                     'train.non_finite.max_skips.'], result.stderr[-3000:]
    assert 'Traceback' not in result.stderr
    experiment = tmp_path / 'experiments' / 'nan_stop'
    log = training_log(experiment)
    for iteration in (5, 6):
        assert (f'iteration {iteration}: skipped the net_g step: non-finite total=nan, l_pix=nan; '
                f'{iteration - 4} skipped in a row (train.non_finite.max_skips: 2)') in log
    assert 'iteration 4: skipped' not in log
    # iterations 5 and 6 changed nothing: weights, EMA weights, optimiser and scheduler at 6 are those of 4
    models = experiment / 'models'
    for key in ('params', 'params_ema'):
        at4, at6 = load_params(models / 'net_g_4.pth', key), load_params(models / 'net_g_6.pth', key)
        assert all(torch.equal(at4[name], at6[name]) for name in at4), key
        assert all(torch.isfinite(t).all() for t in at6.values())
    assert not (models / 'net_g_8.pth').exists()
    state4, state6 = (torch.load(experiment / 'training_states' / f'{i}.state', weights_only=False) for i in (4, 6))
    assert state6['optimizers'][0]['state'][0]['step'] == state4['optimizers'][0]['state'][0]['step'] == 4
    assert state6['schedulers'][0]['last_epoch'] == state4['schedulers'][0]['last_epoch'] == 3
    assert state6['optimizers'][0]['param_groups'][0]['lr'] == state4['optimizers'][0]['param_groups'][0]['lr']


@pytest.mark.slow
def test_basicsr_own_train_pipeline_skips_two_nan_steps_and_finishes(demo_data, tmp_path):
    """A user's BasicSR project (`from basicsr.train import train_pipeline`) gets the same policy."""
    opt = nan_run_options(demo_data, 'nan_transient', first=3, last=4, max_skips=2)
    run_entry(tmp_path, opt, 'basicsr-own-loop')
    experiment = tmp_path / 'experiments' / 'nan_transient'
    log = training_log(experiment)
    assert re.findall(r'iteration (\d+): skipped the net_g step', log) == ['3', '4']
    at2, final = load_params(experiment / 'models' / 'net_g_2.pth'), load_params(experiment / 'models' /
                                                                                 'net_g_latest.pth')
    assert all(torch.isfinite(t).all() for t in final.values())
    assert not all(torch.equal(at2[n], final[n]) for n in at2)  # it went on training after the NaN steps


# --- gradient clipping and option checks, in process -------------------------------------------------------

# BasicSR 1.4.2 builds only Adam; with eps far above every |gradient| its first step is gradient descent at
# rate lr / eps, here 1: the weights move by the gradient itself.
GRADIENT_STEP = {'type': 'Adam', 'lr': 1e6, 'eps': 1e6}


def model_options(tmp_path, model_type='SRModel', **train):
    folder = str(tmp_path)
    opt = {'name': 'clip', 'model_type': model_type, 'scale': 2, 'num_gpu': 0, 'is_train': True, 'dist': False,
           'rank': 0, 'world_size': 1,
           'network_g': {'type': 'EDSR', 'num_in_ch': 3, 'num_out_ch': 3, 'num_feat': 8, 'num_block': 1, 'upscale': 2},
           'path': {'experiments_root': folder, 'models': folder, 'training_states': folder},
           'train': {'ema_decay': 0, 'optim_g': dict(GRADIENT_STEP),
                     'scheduler': {'type': 'MultiStepLR', 'milestones': [100], 'gamma': 0.5},
                     'pixel_opt': {'type': 'SPLoss'}, **train}}
    if model_type == 'TLWModel':
        opt['network_w'] = {'type': 'TLWWeightingNet', 'num_feat': 4}
        opt['train'].update(optim_w=dict(GRADIENT_STEP), pixel_opt={'type': 'TLWLoss'},
                            tlw={'judge': {'type': 'l1'}, 'iters_per_epoch': 1})
    if model_type == 'UDLModel':
        opt['network_g'] = {'type': 'UncertaintySRNet', 'backbone': opt['network_g']}
        opt['train']['pixel_opt'] = {'type': 'UDLLoss', 'stage': 'esu'}
    if model_type == 'FGDModel':
        opt['network_g'] = {'type': 'FGDNet', 'backbone': opt['network_g']}
        opt['train']['pixel_opt'] = {'type': 'FineGrainedDynamicLoss'}
    return opt


def step_changes(opt):
    """How far one training step moves each network's parameters (L2 norm of the change)."""
    torch.manual_seed(0)
    model = build_model(copy.deepcopy(opt))
    nets = {'net_g': model.net_g, 'net_w': getattr(model, 'net_w', None)}
    before = {k: torch.cat([p.detach().flatten().clone() for p in n.parameters()]) for k, n in nets.items() if n}
    model.feed_data({'lq': torch.rand(2, 3, 12, 12), 'gt': torch.rand(2, 3, 24, 24)})
    model.update_learning_rate(1)
    model.optimize_parameters(1)
    return {k: (torch.cat([p.detach().flatten() for p in nets[k].parameters()]) - b).norm().item()
            for k, b in before.items()}


@pytest.mark.parametrize('model_type', ['SRModel', 'TLWModel', 'UDLModel', 'FGDModel'])
def test_grad_clip_bounds_every_optimised_networks_step(tmp_path, model_type):
    """A gradient step of rate 1 moves the weights by the gradient itself: clipped, its norm is max_norm."""
    free = step_changes(model_options(tmp_path, model_type))
    clipped = step_changes(model_options(tmp_path, model_type, grad_clip={'max_norm': 1e-4}))
    for net in free:
        assert free[net] > 1e-3
        assert clipped[net] == pytest.approx(1e-4, rel=1e-3), net


@pytest.mark.parametrize('train, message', [
    ({'grad_clip': {'max_norm': -1}}, r'train.grad_clip.max_norm: expected a number > 0, got -1'),
    ({'grad_clip': {'maxnorm': 1}}, r'train.grad_clip: expected \{max_norm'),
    ({'grad_clip': 0.1}, r'train.grad_clip: expected \{max_norm'),
    ({'non_finite': {'max_skip': 3}}, r'train.non_finite: expected \{max_skips'),
    ({'non_finite': {'max_skips': -1}}, r'train.non_finite.max_skips: expected an integer >= 0, got -1'),
])
def test_bad_policy_options_are_one_line_errors(tmp_path, train, message):
    with pytest.raises(OptionError, match=message):
        build_model(model_options(tmp_path, **train))


def test_no_checkpoint_holds_non_finite_weights(tmp_path):
    from losses_plugin.models.training_step import NonFiniteTraining
    model = build_model(model_options(tmp_path))
    with torch.no_grad():
        next(model.net_g.parameters())[0] = float('nan')
    with pytest.raises(NonFiniteTraining, match='net_g holds non-finite values in .* at iteration 3: not saved'):
        model.save(0, 3)
    assert not list(tmp_path.glob('net_g_3.pth'))


def test_skips_in_a_row_are_counted_named_and_stop_past_max_skips(tmp_path):
    """In process (the runs above are slow): a NaN term skips the step with the term and iteration in the
    warning, a finite step resets the count, and the step past max_skips raises with the same line."""
    from losses_plugin.models.training_step import NonFiniteTraining
    torch.manual_seed(0)
    model = build_model(model_options(tmp_path, non_finite={'max_skips': 1}, pixel_opt={'type': 'L1Loss'},
                                      scheduler={'type': 'MultiStepLR', 'milestones': [1], 'gamma': 0.5}))
    rate = model.optimizer_g.param_groups[0]['lr']
    lq, gt = torch.rand(2, 3, 12, 12), torch.rand(2, 3, 24, 24)

    def step(current_iter, target):
        model.feed_data({'lq': lq, 'gt': target})
        model.update_learning_rate(current_iter)
        before = torch.cat([p.detach().flatten().clone() for p in model.net_g.parameters()])
        model.optimize_parameters(current_iter)
        return (torch.cat([p.detach().flatten() for p in model.net_g.parameters()]) - before).abs().max().item()

    nan_gt = gt.clone()
    nan_gt[0, 0, 0, 0] = float('nan')
    with basicsr_warnings() as logged:
        assert step(1, gt) > 0  # (BasicSR steps the schedulers from iteration 2 on)
        with warnings.catch_warnings():
            warnings.simplefilter('error')  # (the message reads the terms without autograd warnings)
            assert step(2, nan_gt) == 0
        assert model.optimizer_g.param_groups[0]['lr'] == rate  # the scheduler's step is undone with it
        assert step(3, gt) > 0  # a finite step resets the count
        assert model.optimizer_g.param_groups[0]['lr'] == rate / 2  # ... and reaches the milestone once
        assert step(4, nan_gt) == 0
    assert logged == [f'iteration {i}: skipped the net_g step: non-finite total=nan, l_pix=nan; 1 skipped in a '
                        'row (train.non_finite.max_skips: 1)' for i in (2, 4)]
    with pytest.raises(NonFiniteTraining, match='^' + re.escape(
            'iteration 5: skipped the net_g step: non-finite total=nan, l_pix=nan; 2 skipped in a row '
            '(train.non_finite.max_skips: 1). Training stopped; the last checkpoint holds finite weights and '
            'resumes. Lower the learning rate, set train.grad_clip, or raise train.non_finite.max_skips.') + '$'):
        step(5, nan_gt)


class _NaNGradient(torch.autograd.Function):
    """The identity forward; a NaN gradient backward."""

    @staticmethod
    def forward(ctx, x):
        return x.clone()

    @staticmethod
    def backward(ctx, grad):
        return grad * float('nan')


class NaNGradientL1(torch.nn.Module):
    """L1 with a finite value and a NaN gradient."""

    def forward(self, pred, target):
        return (_NaNGradient.apply(pred) - target).abs().mean()


if 'NaNGradientL1' not in LOSS_REGISTRY:
    LOSS_REGISTRY.register()(NaNGradientL1)


def parameters_of(net):
    return torch.cat([p.detach().flatten().clone() for p in net.parameters()])


def test_a_non_finite_gradient_with_finite_terms_is_skipped_and_said_so(tmp_path):
    torch.manual_seed(0)
    model = build_model(model_options(tmp_path, non_finite={'max_skips': 3}, pixel_opt={'type': 'NaNGradientL1'}))
    model.feed_data({'lq': torch.rand(2, 3, 12, 12), 'gt': torch.rand(2, 3, 24, 24)})
    before = parameters_of(model.net_g)
    with basicsr_warnings() as logged:
        model.optimize_parameters(7)
    assert logged == ['iteration 7: skipped the net_g step: non-finite gradient of net_g (the loss terms are '
                        'finite); 1 skipped in a row (train.non_finite.max_skips: 3)']
    assert torch.equal(parameters_of(model.net_g), before)
    assert not model.optimizer_g.state  # Adam never stepped
    assert all(p.grad is None for p in model.net_g.parameters())  # the NaN gradients are dropped
    assert math.isfinite(model.get_current_log()['l_pix'])


def test_grad_clip_norm_type_is_the_norm_it_bounds(tmp_path):
    """With ``norm_type: 1`` a gradient step of rate 1 moves the weights by a change of L1 norm max_norm."""
    torch.manual_seed(0)
    model = build_model(model_options(tmp_path, grad_clip={'max_norm': 1e-3, 'norm_type': 1}))
    model.feed_data({'lq': torch.rand(2, 3, 12, 12), 'gt': torch.rand(2, 3, 24, 24)})
    before = parameters_of(model.net_g)
    model.optimize_parameters(1)
    change = parameters_of(model.net_g) - before
    assert change.abs().sum().item() == pytest.approx(1e-3, rel=1e-3)
    assert change.norm().item() < 0.5e-3


@pytest.mark.parametrize('grad_clip, message', [
    ({'max_norm': 0}, 'train.grad_clip.max_norm: expected a number > 0, got 0'),
    ({'max_norm': True}, 'train.grad_clip.max_norm: expected a number > 0, got True'),
    ({'max_norm': '0.1'}, "train.grad_clip.max_norm: expected a number > 0, got '0.1'"),
    ({'max_norm': 1, 'norm_type': 0}, 'train.grad_clip.norm_type: expected a number > 0, got 0'),
    ({'max_norm': 1, 'norm_type': 'inf'}, "train.grad_clip.norm_type: expected a number > 0, got 'inf'"),
    ({'max_norm': 1, 'norm': 2}, "train.grad_clip: expected {max_norm: <number > 0>[, norm_type: 2]}, "
                                 "got {'max_norm': 1, 'norm': 2}"),
    ({'norm_type': 2}, "train.grad_clip: expected {max_norm: <number > 0>[, norm_type: 2]}, got {'norm_type': 2}"),
    ({'non_finite': {'max_skips': 2.0}}, 'train.non_finite.max_skips: expected an integer >= 0, got 2.0'),
    ({'non_finite': {'max_skips': False}}, 'train.non_finite.max_skips: expected an integer >= 0, got False'),
    ({'non_finite': 3}, 'train.non_finite: expected {max_skips: <integer >= 0>}, got 3'),
])
def test_every_bad_grad_clip_or_non_finite_option_has_its_full_line(tmp_path, grad_clip, message):
    train = grad_clip if 'non_finite' in grad_clip else {'grad_clip': grad_clip}
    with pytest.raises(OptionError, match=f'^{re.escape(message)}$'):
        build_model(model_options(tmp_path, **train))


@pytest.mark.parametrize('train', [{'grad_clip': {'max_norm': 1}}, {'grad_clip': {'max_norm': 0.5, 'norm_type': 1}},
                                   {'non_finite': {'max_skips': 0}}])
def test_the_boundaries_of_the_policy_options_are_accepted(tmp_path, train):
    guard = build_model(model_options(tmp_path, **train)).step_guard
    if 'grad_clip' in train:
        clip = train['grad_clip']
        assert guard.grad_clip == (float(clip['max_norm']), float(clip.get('norm_type', 2)))
        assert all(type(value) is float for value in guard.grad_clip)
    else:
        assert guard.max_skips == 0 and guard.grad_clip is None


@pytest.mark.parametrize('model_type, terms', [('UDLModel', 'l_pix'), ('FGDModel', 'l_r'), ('SRModel', 'l_pix')])
def test_a_nan_input_skips_the_net_g_step_of_every_model_with_its_name_and_iteration(tmp_path, model_type, terms):
    model = build_model(model_options(tmp_path, model_type, non_finite={'max_skips': 1}))
    lq = torch.rand(2, 3, 12, 12)
    lq[0, 0, 0, 0] = float('nan')
    model.feed_data({'lq': lq, 'gt': torch.rand(2, 3, 24, 24)})
    before = parameters_of(model.net_g)
    with basicsr_warnings() as logged:
        model.optimize_parameters(6)
    assert len(logged) == 1 and logged[0].startswith('iteration 6: skipped the net_g step: non-finite total=nan')
    assert f' {terms}=nan' in logged[0] and logged[0].endswith('; 1 skipped in a row '
                                                                   '(train.non_finite.max_skips: 1)')
    assert torch.equal(parameters_of(model.net_g), before) and model.step_guard.skips_in_a_row == {'net_g': 1}


def test_the_skip_reason_gives_each_terms_own_value_or_blames_another_rank():
    from losses_plugin.models.training_step import StepGuard
    nan, inf = torch.tensor(float('nan')), torch.tensor(float('inf'))
    terms = {'l_a': inf, 'l_b': -inf, 'l_c': torch.tensor(1.0)}
    assert StepGuard._reason('net_w', ['total', 'l_a', 'l_b'], True, nan, terms) == \
        'non-finite total=nan, l_a=inf, l_b=-inf'
    assert StepGuard._reason('net_w', [], True, nan, terms) == 'a non-finite loss on another rank'
    assert StepGuard._reason('net_w', [], False, nan, terms) == \
        'non-finite gradient of net_w (the loss terms are finite)'


def test_the_skip_counts_and_scalers_survive_a_state_round_trip_and_old_states_load(tmp_path):
    guard = build_model(model_options(tmp_path, amp={'dtype': 'float16'})).step_guard
    guard.skips_in_a_row = {'net_g': 2}
    scaler = guard._scaler('net_g')
    scaler.scale(torch.ones(()))  # (the scale is made at the first use)
    scaler.update(new_scale=1024.0)
    fresh = build_model(model_options(tmp_path, amp={'dtype': 'float16'})).step_guard
    fresh.load_state_dict(guard.state_dict())
    assert fresh.skips_in_a_row == {'net_g': 2} and fresh.skips_in_a_row is not guard.skips_in_a_row
    assert fresh.scalers['net_g'].get_scale() == 1024.0
    older = build_model(model_options(tmp_path)).step_guard
    older.load_state_dict({})  # a training state saved before the policy existed
    assert older.skips_in_a_row == {} and older.scalers == {}


def test_without_train_non_finite_the_first_skip_stops_training(tmp_path):
    from losses_plugin.models.training_step import NonFiniteTraining
    model = build_model(model_options(tmp_path, pixel_opt={'type': 'NaNGradientL1'}))
    assert model.step_guard.max_skips == 0
    model.feed_data({'lq': torch.rand(2, 3, 12, 12), 'gt': torch.rand(2, 3, 24, 24)})
    with pytest.raises(NonFiniteTraining, match='^iteration 1: skipped the net_g step: .*max_skips: 0\\)'):
        model.optimize_parameters(1)


def test_a_skipped_step_leaves_the_ema_copy_alone(tmp_path):
    model = build_model(model_options(tmp_path, ema_decay=0.5, non_finite={'max_skips': 1},
                                      pixel_opt={'type': 'NaNGradientL1'}))
    with torch.no_grad():  # an EMA apart from net_g, so that an update would show
        for p in model.net_g_ema.parameters():
            p.add_(1.0)
    ema_before = parameters_of(model.net_g_ema)
    model.feed_data({'lq': torch.rand(2, 3, 12, 12), 'gt': torch.rand(2, 3, 24, 24)})
    model.optimize_parameters(1)
    assert torch.equal(parameters_of(model.net_g_ema), ema_before)


def test_under_float16_a_lasting_nan_gradient_is_the_scalers_until_its_scale_falls_below_1(tmp_path):
    """The scaler owns overflows: it halves its scale and skips. Once the scale is below 1 a non-finite
    gradient cannot be an overflow, so the policy counts it (here max_skips 0: training stops)."""
    from losses_plugin.models.training_step import NonFiniteTraining
    model = build_model(model_options(tmp_path, amp={'dtype': 'float16'}, pixel_opt={'type': 'NaNGradientL1'}))
    model.step_guard.scalers['net_g'] = torch.amp.GradScaler('cpu', init_scale=2.0)
    model.feed_data({'lq': torch.rand(2, 3, 12, 12), 'gt': torch.rand(2, 3, 24, 24)})
    model.optimize_parameters(1)  # scale 2 -> 1: still the scaler's
    assert model.step_guard.scalers['net_g'].get_scale() == 1.0 and model.step_guard.skips_in_a_row == {}
    with pytest.raises(NonFiniteTraining, match='^iteration 2: skipped the net_g step: non-finite gradient of net_g'):
        model.optimize_parameters(2)  # scale 1 -> 0.5: the policy's
