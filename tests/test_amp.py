"""Mixed precision, `train.amp: {dtype: bfloat16|float16}` (losses_plugin/models/training_step.py), on the CPU.

The networks' forward passes run in the chosen dtype, losses in float32, weights and checkpoints stay float32;
a few iterations follow the float32 loss curve within a stated tolerance; float16's GradScaler is saved with
the training state and restored on resume.
"""
import copy
import os
import re
from types import SimpleNamespace

import pytest
import torch
from basicsr.models import build_model

from losses_plugin.checks import OptionError
from losses_plugin.models import training_step
from losses_plugin.resume import load_training_state

# bfloat16 keeps 8 bits of mantissa: a loss of these tiny networks moves by well under this from float32
CURVE_TOLERANCE = 0.03  # relative, per iteration, over 4 iterations from the same weights and batch

EDSR = {'type': 'EDSR', 'num_in_ch': 3, 'num_out_ch': 3, 'num_feat': 8, 'num_block': 1, 'upscale': 2}
ADAM = {'type': 'Adam', 'lr': 1e-4, 'betas': [0.9, 0.99]}


def options(tmp_path, model_type, amp=None):
    folder = str(tmp_path)
    opt = {'name': 'amp', 'model_type': model_type, 'scale': 2, 'num_gpu': 0, 'is_train': True, 'dist': False,
           'rank': 0, 'world_size': 1, 'network_g': dict(EDSR),
           'path': {'experiments_root': folder, 'models': folder, 'training_states': folder},
           'train': {'ema_decay': 0, 'optim_g': dict(ADAM), 'pixel_opt': {'type': 'SPLoss'},
                     'scheduler': {'type': 'MultiStepLR', 'milestones': [100], 'gamma': 0.5}}}
    if model_type == 'TLWModel':
        opt['network_w'] = {'type': 'TLWWeightingNet', 'num_feat': 4}
        opt['train'].update(optim_w=dict(ADAM), pixel_opt={'type': 'TLWLoss'},
                            tlw={'judge': {'type': 'ms_ssim'}, 'iters_per_epoch': 1})
    if model_type == 'UDLModel':
        opt['network_g'] = {'type': 'UncertaintySRNet', 'backbone': dict(EDSR)}
        opt['train']['pixel_opt'] = {'type': 'UDLLoss', 'stage': 'esu'}
    if model_type == 'FGDModel':
        opt['network_g'] = {'type': 'FGDNet', 'backbone': dict(EDSR)}
        opt['train']['pixel_opt'] = {'type': 'FineGrainedDynamicLoss'}
    if amp:
        opt['train']['amp'] = {'dtype': amp}
    return opt


def train(opt, iterations=4):
    """Per-iteration logged losses and the dtypes the first convolution of net_g computed in."""
    torch.manual_seed(0)
    model = build_model(copy.deepcopy(opt))
    dtypes = []
    first_conv = next(m for m in model.net_g.modules() if isinstance(m, torch.nn.Conv2d))
    first_conv.register_forward_hook(lambda module, inputs, output: dtypes.append(output.dtype))
    generator = torch.Generator().manual_seed(1)
    batch = {'lq': torch.rand(2, 3, 16, 16, generator=generator), 'gt': torch.rand(2, 3, 32, 32, generator=generator)}
    curve = []
    for iteration in range(1, iterations + 1):
        torch.manual_seed(100 + iteration)  # TLW's samples: the same draws in both precisions
        model.feed_data(batch)
        model.update_learning_rate(iteration)
        model.optimize_parameters(iteration)
        curve.append(model.get_current_log())
    return model, curve, set(dtypes)


@pytest.mark.parametrize('model_type, term', [('SRModel', 'l_pix'), ('TLWModel', 'l_pix'), ('TLWModel', 'l_w'),
                                              ('UDLModel', 'l_pix'), ('FGDModel', 'l_total'), ('FGDModel', 'l_r')])
def test_bfloat16_runs_the_networks_in_bfloat16_and_follows_the_float32_curve(tmp_path, model_type, term):
    model32, curve32, dtypes32 = train(options(tmp_path, model_type))
    model16, curve16, dtypes16 = train(options(tmp_path, model_type, 'bfloat16'))
    assert dtypes32 == {torch.float32} and dtypes16 == {torch.bfloat16}
    for logged32, logged16 in zip(curve32, curve16):
        assert logged16[term] == pytest.approx(logged32[term], rel=CURVE_TOLERANCE)
    assert curve16[-1][term] != curve32[-1][term]  # bfloat16 did change the arithmetic
    for model in (model16, model32):
        assert all(p.dtype == torch.float32 for p in model.net_g.parameters())
    if model_type == 'SRModel':  # the loss itself is float32: the model's output is, under autocast too
        assert model16.output.dtype == torch.float32


def test_float16_gradscaler_is_saved_and_restored_with_the_training_state(tmp_path):
    opt = options(tmp_path, 'SRModel', 'float16')
    model, curve, dtypes = train(opt)
    assert dtypes == {torch.float16} and all(torch.isfinite(torch.tensor(c['l_pix'])) for c in curve)
    scaler = model.step_guard.scalers['net_g']
    assert scaler.is_enabled() and scaler.get_scale() > 0
    scaler.update(1234.0)  # a scale no fresh scaler has
    model.save_training_state(epoch=0, current_iter=4)
    state = load_training_state(str(tmp_path / '4.state'), opt)
    assert state['step_guard']['scalers']['net_g']['scale'] == 1234.0

    resumed = build_model(copy.deepcopy(opt))
    resumed.resume_training(state)
    assert resumed.step_guard.scalers['net_g'].get_scale() == 1234.0
    assert all(p.dtype == torch.float32 for p in resumed.net_g.parameters())


def test_float16_overflow_is_the_scalers_to_skip_not_the_non_finite_policy(tmp_path):
    """A first scale of 2^40 overflows float16 gradients: the scaler skips and halves, training goes on."""
    opt = options(tmp_path, 'SRModel', 'float16')
    torch.manual_seed(0)
    model = build_model(copy.deepcopy(opt))
    model.step_guard.scalers['net_g'] = torch.amp.GradScaler('cpu', init_scale=2.0 ** 40, growth_interval=1000)
    before = [p.detach().clone() for p in model.net_g.parameters()]
    model.feed_data({'lq': torch.rand(2, 3, 16, 16), 'gt': torch.rand(2, 3, 32, 32)})
    model.update_learning_rate(1)
    model.optimize_parameters(1)  # max_skips is 0: a counted skip would raise
    assert model.step_guard.scalers['net_g'].get_scale() < 2.0 ** 40
    assert all(torch.equal(a, p) for a, p in zip(before, model.net_g.parameters()))  # the step was skipped


@pytest.mark.parametrize('amp', [{'dtype': 'float8'}, {'dtype': 'bfloat16', 'enabled': True}, 'bf16', True])
def test_bad_amp_options_are_one_line_errors(tmp_path, amp):
    opt = options(tmp_path, 'SRModel')
    opt['train']['amp'] = amp
    with pytest.raises(OptionError, match=r'train.amp: expected \{dtype: bfloat16\} or \{dtype: float16\}'):
        build_model(opt)


# --- channels_last and torch.compile ------------------------------------------------------------------------

def one_step(opt):
    torch.manual_seed(0)
    model = build_model(copy.deepcopy(opt))
    model.feed_data({'lq': torch.rand(2, 3, 16, 16, generator=torch.Generator().manual_seed(1)),
                     'gt': torch.rand(2, 3, 32, 32, generator=torch.Generator().manual_seed(2))})
    model.update_learning_rate(1)
    model.optimize_parameters(1)
    return model


def test_channels_last_lays_out_networks_and_batches_and_changes_no_result(tmp_path):
    plain = one_step(options(tmp_path, 'TLWModel'))
    opt = options(tmp_path, 'TLWModel')
    opt['train']['channels_last'] = True
    laid_out = one_step(opt)
    for net in (laid_out.net_g, laid_out.net_w):
        conv = next(m for m in net.modules() if isinstance(m, torch.nn.Conv2d))
        assert conv.weight.is_contiguous(memory_format=torch.channels_last)
    assert laid_out.lq.is_contiguous(memory_format=torch.channels_last) and not plain.lq.is_contiguous(
        memory_format=torch.channels_last)
    for name in ('l_pix', 'l_w'):
        assert laid_out.get_current_log()[name] == pytest.approx(plain.get_current_log()[name], rel=1e-5)


def test_compiled_networks_train_and_save_plain_checkpoints(tmp_path):
    """`compile: {backend: eager}` runs the dynamo wiring without a C++ build (inductor is the default)."""
    opt = options(tmp_path, 'TLWModel')
    opt['train']['compile'] = {'backend': 'eager'}
    model = one_step(opt)
    assert type(model.net_g).__name__ == 'OptimizedModule' and type(model.net_w).__name__ == 'OptimizedModule'
    plain = one_step(options(tmp_path, 'TLWModel'))
    assert model.get_current_log()['l_pix'] == pytest.approx(plain.get_current_log()['l_pix'], rel=1e-5)
    model.save(0, 1)
    for label, net in (('net_g', plain.net_g), ('net_w', plain.net_w)):
        saved = torch.load(tmp_path / f'{label}_1.pth', weights_only=True)['params']
        assert not any('_orig_mod' in key for key in saved)
        net.load_state_dict(saved)  # the plain network takes the compiled run's checkpoint


@pytest.mark.parametrize('key, value, message', [
    ('compile', {'mode': 'fast', 'warp': 1}, r'train.compile: expected true, false or \{mode, backend'),
    ('compile', 'yes', r'train.compile: expected true, false or'),
    ('channels_last', 'yes', r'train.channels_last: expected true or false'),
])
def test_bad_layout_options_are_one_line_errors(tmp_path, key, value, message):
    opt = options(tmp_path, 'SRModel')
    opt['train'][key] = value
    with pytest.raises(OptionError, match=message):
        build_model(opt)


@pytest.mark.slow
def test_resume_works_with_and_without_compile_and_amp_either_way(demo_data, tmp_path):
    """A compiled bfloat16 run resumes plain float32, and that one resumes compiled float16 (scaler fresh)."""
    from conftest import run_cli, tiny_options, training_log, write_options
    opt = tiny_options(demo_data, 'switch', total_iter=2, compile={'backend': 'eager'}, amp={'dtype': 'bfloat16'},
                       channels_last=True)
    opt['logger']['save_checkpoint_freq'] = 2
    run_cli(['train', '-opt', write_options(opt, tmp_path / 'a.yml')], cwd=tmp_path)
    plain = dict(opt, train={k: v for k, v in opt['train'].items() if k not in ('compile', 'amp', 'channels_last')})
    plain['train']['total_iter'] = 4
    run_cli(['train', '-opt', write_options(plain, tmp_path / 'b.yml'), '--auto_resume'], cwd=tmp_path)
    half = dict(opt, train=dict(opt['train'], total_iter=6, amp={'dtype': 'float16'}))
    run_cli(['train', '-opt', write_options(half, tmp_path / 'c.yml'), '--auto_resume'], cwd=tmp_path)
    log = training_log(tmp_path / 'experiments' / 'switch')
    assert 'Resuming training from iter: 2.' in log and 'Resuming training from iter: 4.' in log
    saved = torch.load(tmp_path / 'experiments' / 'switch' / 'models' / 'net_g_latest.pth', weights_only=True)
    assert not any('_orig_mod' in key for key in saved['params'])
    assert all(t.dtype == torch.float32 and torch.isfinite(t).all() for t in saved['params'].values())


@pytest.mark.parametrize('train', [{'channels_last': True}, {'compile': {'backend': 'eager'}}, {'compile': True}])
def test_layout_and_compile_reach_only_the_networks_an_optimiser_trains(tmp_path, train, monkeypatch):
    """net_g_ema (an EMA copy no optimiser steps) keeps the plain layout and is not compiled; ``compile: true``
    calls torch.compile with its defaults."""
    calls = []
    monkeypatch.setattr(torch, 'compile', lambda net, **kwargs: calls.append((net, kwargs)) or net)
    import torch._dynamo as dynamo
    suppress_errors, dynamo.config.suppress_errors = dynamo.config.suppress_errors, False
    opt = options(tmp_path, 'SRModel')
    opt['train'].update(ema_decay=0.5, **train)
    infos = []
    monkeypatch.setattr(training_step, 'get_root_logger', lambda: SimpleNamespace(info=infos.append))
    try:
        model = build_model(opt)
        compile_errors_suppressed = dynamo.config.suppress_errors
    finally:
        dynamo.config.suppress_errors = suppress_errors

    def laid_out(net):
        conv = next(m for m in net.modules() if isinstance(m, torch.nn.Conv2d))
        return conv.weight.is_contiguous(memory_format=torch.channels_last)

    assert laid_out(model.net_g) == ('channels_last' in train) and not laid_out(model.net_g_ema)
    if 'compile' in train:
        assert [(net, kwargs) for net, kwargs in calls] == [
            (model.net_g, {} if train['compile'] is True else train['compile'])]
        assert compile_errors_suppressed is True  # a network that fails to compile runs as written
        arguments = '' if train['compile'] is True else train['compile']
        assert infos == [f'net_g: torch.compile({arguments}); if compiling fails, the network runs uncompiled and '
                         'torch logs why']
    else:
        assert not calls and not infos


@pytest.mark.parametrize('key, value, message', [
    ('compile', {'mode': 'fast', 'warp': 1}, "train.compile: expected true, false or {mode, backend, dynamic, "
                                             "fullgraph} (torch.compile's arguments), got {'mode': 'fast', 'warp': 1}"),
    ('compile', 1, "train.compile: expected true, false or {mode, backend, dynamic, fullgraph} (torch.compile's "
                   "arguments), got 1"),
    ('channels_last', 1, 'train.channels_last: expected true or false, got 1'),
    ('amp', {'dtype': 'bfloat16', 'enabled': True},
     "train.amp: expected {dtype: bfloat16} or {dtype: float16}, got {'dtype': 'bfloat16', 'enabled': True}"),
])
def test_layout_and_amp_errors_are_their_full_lines(tmp_path, key, value, message):
    opt = options(tmp_path, 'SRModel')
    opt['train'][key] = value
    with pytest.raises(OptionError, match=f'^{re.escape(message)}$'):
        build_model(opt)


@pytest.mark.parametrize('loss', ['MSELoss', 'L1Loss'])  # NaN gradients too; finite (L1's are 0 at NaN)
def test_a_nan_loss_under_float16_is_counted_by_the_non_finite_policy(tmp_path, loss):
    """Unlike an overflow of the scaled gradients, a NaN loss term is the policy's: the step is skipped and
    counted (also when the gradients are finite), and past max_skips training stops."""
    from losses_plugin.models.training_step import NonFiniteTraining
    opt = options(tmp_path, 'SRModel', 'float16')
    opt['train'].update(non_finite={'max_skips': 1}, pixel_opt={'type': loss})  # (SPLoss refuses a NaN target)
    torch.manual_seed(0)
    model = build_model(copy.deepcopy(opt))
    gt = torch.rand(2, 3, 32, 32)
    gt[0, 0, 0, 0] = float('nan')
    model.feed_data({'lq': torch.rand(2, 3, 16, 16), 'gt': gt})
    before = [p.detach().clone() for p in model.net_g.parameters()]
    model.optimize_parameters(1)
    assert model.step_guard.skips_in_a_row == {'net_g': 1}
    assert all(torch.equal(a, p) for a, p in zip(before, model.net_g.parameters()))
    with pytest.raises(NonFiniteTraining, match='^iteration 2: skipped the net_g step: non-finite total=nan, '
                                                 'l_pix=nan; 2 skipped in a row'):
        model.optimize_parameters(2)


def test_channels_last_trains_a_network_with_5d_weights_and_keeps_their_layout(tmp_path, monkeypatch):
    """GRUNet (DPHSIR's denoiser) is built of Conv3d: torch's ``net.to(memory_format=channels_last)`` refused it."""
    infos = []
    monkeypatch.setattr(training_step, 'get_root_logger', lambda: SimpleNamespace(info=infos.append))
    results = {}
    for layout in (False, True):
        opt = options(tmp_path, 'SRModel')
        opt['network_g'] = {'type': 'GRUNet', 'num_feat': 2, 'num_down': 1, 'noise_level': 25}
        opt['train']['channels_last'] = layout
        torch.manual_seed(0)
        model = build_model(opt)
        model.feed_data({'lq': torch.rand(1, 3, 8, 8, generator=torch.Generator().manual_seed(1)),
                         'gt': torch.rand(1, 3, 8, 8, generator=torch.Generator().manual_seed(2))})
        model.optimize_parameters(1)
        results[layout] = model.get_current_log()['l_pix']
    weights = {p.dim(): p for p in model.net_g.parameters() if p.dim() >= 4}
    assert set(weights) == {5}  # every convolution is 3-D
    assert weights[5].is_contiguous() and results[True] == pytest.approx(results[False], rel=1e-5)
    assert infos == [f'train.channels_last: GRUNet keeps the layout of its '
                     f'{sum(p.dim() == 5 for p in model.net_g.parameters())} 5-D weights (Conv3d); channels_last '
                     'is a 4-D layout']


def test_channels_last_leaves_a_5d_batch_as_it_is_with_one_log_line(tmp_path, monkeypatch):
    infos = []
    monkeypatch.setattr(training_step, 'get_root_logger', lambda: SimpleNamespace(info=infos.append))
    opt = options(tmp_path, 'SRModel')
    opt['train']['channels_last'] = True
    guard = build_model(opt).step_guard
    video = torch.rand(1, 2, 3, 4, 4)
    assert guard.memory_format(video) is video and guard.memory_format(torch.rand(1, 3, 2, 2)).is_contiguous(
        memory_format=torch.channels_last)
    guard.memory_format(video)
    assert infos == ['train.channels_last: the 5-D batches keep their layout; channels_last is a 4-D layout']


def test_channels_last_is_applied_before_ddp_wraps_the_network(tmp_path, monkeypatch, recwarn):
    """DDP's gradient buckets take the parameters' layout when it wraps them; laid out after that, every step warns
    'Grad strides do not match bucket view strides' and copies each gradient. A one-process gloo group makes DDP
    build its buckets on the CPU."""
    import torch.distributed as dist
    from conftest import free_port
    from torch.nn.parallel import DistributedDataParallel

    dist.init_process_group('gloo', init_method=f'tcp://127.0.0.1:{free_port()}', rank=0, world_size=1)
    try:
        opt = dict(options(tmp_path, 'SRModel'), dist=True)
        opt['train']['channels_last'] = True
        model = one_step(opt)
        model.optimize_parameters(2)
    finally:
        dist.destroy_process_group()
    assert isinstance(model.net_g, DistributedDataParallel)
    conv = next(m for m in model.net_g.modules() if isinstance(m, torch.nn.Conv2d))
    assert conv.weight.is_contiguous(memory_format=torch.channels_last)
    assert conv.weight.grad.is_contiguous(memory_format=torch.channels_last)
    assert not [w for w in recwarn if 'bucket view strides' in str(w.message)]


@pytest.fixture
def global_algorithm_settings():
    """``train.deterministic`` changes process-wide settings: put them back for the other tests."""
    saved = (torch.backends.cudnn.benchmark, torch.backends.cudnn.deterministic,
             torch.are_deterministic_algorithms_enabled(), torch.is_deterministic_algorithms_warn_only_enabled())
    yield
    torch.backends.cudnn.benchmark, torch.backends.cudnn.deterministic = saved[:2]
    torch.use_deterministic_algorithms(saved[2], warn_only=saved[3])


@pytest.mark.parametrize('deterministic', [True, False, None])
def test_deterministic_turns_off_what_basicsrs_loop_turned_on(tmp_path, monkeypatch, global_algorithm_settings,
                                                              deterministic):
    monkeypatch.delenv('CUBLAS_WORKSPACE_CONFIG', raising=False)
    torch.backends.cudnn.benchmark = True  # as basicsr.train.train_pipeline and ours set it before build_model
    torch.use_deterministic_algorithms(False)
    opt = options(tmp_path, 'SRModel')
    if deterministic is not None:
        opt['train']['deterministic'] = deterministic
    one_step(opt)
    on = deterministic is True
    assert torch.backends.cudnn.benchmark is not on and torch.backends.cudnn.deterministic is on
    assert torch.are_deterministic_algorithms_enabled() is on
    assert (torch.is_deterministic_algorithms_warn_only_enabled() if on else True)
    assert (os.environ.get('CUBLAS_WORKSPACE_CONFIG') == ':4096:8') is on


def test_deterministic_must_be_a_flag(tmp_path):
    opt = options(tmp_path, 'SRModel')
    opt['train']['deterministic'] = 'yes'
    with pytest.raises(OptionError, match="^train.deterministic: expected true or false, got 'yes'$"):
        build_model(opt)


def test_channels_last_lays_out_4d_buffers_too():
    from losses_plugin.models.training_step import to_channels_last

    net = torch.nn.Conv2d(3, 4, 3)
    net.register_buffer('kernel', torch.rand(2, 3, 4, 5))
    to_channels_last(net)
    assert net.kernel.is_contiguous(memory_format=torch.channels_last) and not net.kernel.is_contiguous()


def test_deterministic_says_what_it_turned_on(tmp_path, global_algorithm_settings):
    from conftest import basicsr_messages

    opt = options(tmp_path, 'SRModel')
    opt['train']['deterministic'] = True
    with basicsr_messages() as messages:
        one_step(opt)
    assert ('train.deterministic: cudnn.benchmark off, deterministic algorithms on (torch warns about an operation '
            'that has none)') in messages


def test_channels_last_is_for_training_only():
    assert training_step.channels_last_requested({'is_train': True, 'train': {'channels_last': True}}) is True
    assert training_step.channels_last_requested({'is_train': False, 'train': {'channels_last': True}}) is False
