"""One training step of SRModel with our losses and of FGDModel, checked against the objective it documents.

Each model is built in-process from a tiny option dict and steps once on a fixed batch; then
- the step moves the weights of the network it trains and lowers its documented objective on that batch;
- the step is gradient descent on exactly the logged objective: with plain gradient-descent steps of rate
  lr, a step lowers the objective by ``|delta|^2 / lr`` to first order (``delta = -lr * grad``), so a term
  that reaches the logged value but not the backward pass (or the reverse) breaks the equality (FGD's
  total is not smooth enough for this: there each term's coefficient is checked in the update instead);
- the logged total is the documented weighted sum of the logged terms, and each coefficient reaches the update.
The models run in float64 (the default dtype during each test) so the fall of one small step is exact to
far below the tolerances. TLWModel's steps are in test_tlw_model.py, UDLModel's in test_udl_model.py; they
use the helpers here.
"""
import copy

import pytest
import torch
import torch.nn.functional as F
from basicsr.losses import build_loss
from basicsr.models import build_model
from basicsr.utils.registry import LOSS_REGISTRY

# Adam moves each weight by lr * g / (|g| + eps) on its first step: with eps far above every |g| that is
# gradient descent at rate lr / eps. BasicSR 1.4.2's get_optimizer builds only Adam, and plain Adam's first
# step (about lr * sign(g)) hardly changes when a loss term's coefficient does.
GRADIENT_DESCENT_EPS = 1e6


def gradient_descent(lr):
    """Optimiser options whose first step is ``weights -= lr * gradient``."""
    return {'type': 'Adam', 'lr': lr * GRADIENT_DESCENT_EPS, 'eps': GRADIENT_DESCENT_EPS}


@pytest.fixture
def float64():
    """Networks and batches in float64 while the test runs: one small step's fall is then exact to ~1e-12."""
    previous = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    yield
    torch.set_default_dtype(previous)


def tiny_edsr():
    return {'type': 'EDSR', 'num_in_ch': 3, 'num_out_ch': 3, 'num_feat': 8, 'num_block': 1, 'upscale': 2}


def step_options(tmp_path, model_type, network_g, pixel_opt, lr, **train):
    """Options of a training model on the CPU, without data sets (the tests feed batches themselves)."""
    folder = str(tmp_path)
    return {'name': 'steps', 'model_type': model_type, 'scale': 2, 'num_gpu': 0, 'is_train': True, 'dist': False,
            'rank': 0, 'world_size': 1, 'network_g': network_g,
            'path': {'experiments_root': folder, 'models': folder, 'training_states': folder},
            'train': {'ema_decay': 0, 'optim_g': gradient_descent(lr), 'pixel_opt': pixel_opt,
                      'scheduler': {'type': 'MultiStepLR', 'milestones': [100], 'gamma': 0.5}, **train}}


def build(opt):
    """The model, from the same initial weights for every variant of a test."""
    torch.manual_seed(0)
    return build_model(copy.deepcopy(opt))  # BasicSR pops 'type' out of its option dicts


def fixed_batch():
    """2 pairs, LQ 16x16 -> GT 32x32; the LQ is the GT downsampled plus noise."""
    generator = torch.Generator().manual_seed(0)
    gt = torch.rand(2, 3, 32, 32, generator=generator)
    lq = F.avg_pool2d(gt, 2) + 0.05 * torch.rand(2, 3, 16, 16, generator=generator)
    return {'lq': lq, 'gt': gt}


def parameters(net):
    return {name: p.detach().clone() for name, p in net.named_parameters()}


def moved(before, net):
    """Names of the parameters that differ from ``before``."""
    return {name for name, p in net.named_parameters() if not torch.equal(before[name], p.detach())}


def update(before, net):
    """The step, all parameters flattened into one vector."""
    return torch.cat([(p.detach() - before[name]).flatten() for name, p in net.named_parameters()])


def assert_gradient_step(value_before, value_after, before, net, lr, rel=1e-2):
    """The objective fell by what one gradient-descent step on it takes off to first order."""
    assert value_after < value_before, f'one step raised the objective from {value_before} to {value_after}'
    first_order = update(before, net).square().sum().item() / lr
    assert value_before - value_after == pytest.approx(first_order, rel=rel), (
        'the step is not gradient descent on the objective: it fell by '
        f'{value_before - value_after:.6g}, a gradient step on it takes off {first_order:.6g}')


def assert_ema_step(model, ema_before, decay):
    """After a step that stepped: ``net_g_ema = decay * its previous weights + (1 - decay) * net_g``, where
    net_g moved far from the previous EMA (a first Adam step of ~1e-2 per weight) for the mix to show."""
    moved_far = {name for name, p in model.net_g.named_parameters()
                 if not torch.allclose(ema_before[name], p.detach(), rtol=0, atol=1e-4)}
    assert len(moved_far) > len(ema_before) // 2, 'the step hardly moved net_g: the test would show nothing'
    for name, p in model.net_g.named_parameters():
        expected = decay * ema_before[name] + (1 - decay) * p.detach()
        assert torch.allclose(model.net_g_ema.state_dict()[name], expected, rtol=0, atol=1e-6), name


def log_after_step(model, current_iter):
    """The model's log at its stepped weights: one more iteration on the same batch at learning rate 0."""
    for optimizer in model.optimizers:
        for group in optimizer.param_groups:
            group['lr'] = 0
    model.optimize_parameters(current_iter + 1)
    return model.get_current_log()


# ---- SRModel with our losses -----------------------------------------------------------------------------

SR_LR = 1e-3
OUR_LOSSES = {'SPLoss': {'type': 'SPLoss', 'alpha': 2.0},
              'AsymmetricLoss': {'type': 'AsymmetricLoss'},
              'SSIMLoss': {'type': 'SSIMLoss'},
              'MSSSIML1Loss': {'type': 'MSSSIML1Loss', 'padding': 'reflect'}}  # its 33x33 window needs > 32 px valid


@pytest.mark.usefixtures('float64')
@pytest.mark.parametrize('name', OUR_LOSSES)
def test_srmodel_step_is_gradient_descent_on_our_loss(name, tmp_path):
    pixel_opt = OUR_LOSSES[name]
    model = build(step_options(tmp_path, 'SRModel', tiny_edsr(), pixel_opt, SR_LR))
    batch = fixed_batch()
    model.feed_data(batch)
    net_before, before = copy.deepcopy(model.net_g), parameters(model.net_g)
    model.optimize_parameters(1)

    loss = build_loss(copy.deepcopy(pixel_opt))
    with torch.no_grad():
        value_before = loss(net_before(batch['lq']), batch['gt']).item()
        value_after = loss(model.net_g(batch['lq']), batch['gt']).item()
    assert model.get_current_log()['l_pix'] == pytest.approx(value_before, rel=1e-6)
    assert moved(before, model.net_g) == set(before)
    assert_gradient_step(value_before, value_after, before, model.net_g, SR_LR)


@pytest.mark.usefixtures('float64')
def test_srmodel_logs_and_steps_the_weighted_loss(tmp_path):
    def one_step(loss_weight):
        model = build(step_options(tmp_path, 'SRModel', tiny_edsr(), {'type': 'SPLoss', 'loss_weight': loss_weight},
                                   SR_LR))
        model.feed_data(fixed_batch())
        before = parameters(model.net_g)
        model.optimize_parameters(1)
        return model.get_current_log()['l_pix'], update(before, model.net_g)

    (logged, step), (logged_half, step_half), (logged_zero, step_zero) = map(one_step, (1.0, 0.5, 0.0))
    assert logged_half == pytest.approx(0.5 * logged, rel=1e-9) and logged_zero == 0
    assert (step_half - 0.5 * step).norm() <= 1e-4 * step.norm()
    assert not step_zero.any()


class PerceptualStub(torch.nn.Module):
    """A stand-in for BasicSR's PerceptualLoss (whose VGG weights cannot be downloaded here): the same
    ``(l_percep, l_style)`` interface, with a style term of None unless ``style_weight`` is given."""

    def __init__(self, perceptual_weight, style_weight=None):
        super().__init__()
        self.perceptual_weight, self.style_weight = perceptual_weight, style_weight

    def forward(self, x, gt):
        percep = self.perceptual_weight * (F.avg_pool2d(x, 2) - F.avg_pool2d(gt, 2)).square().mean()
        if self.style_weight is None:
            return percep, None
        return percep, self.style_weight * (x.mean(dim=(-2, -1)) - gt.mean(dim=(-2, -1))).abs().mean()


if 'PerceptualStub' not in LOSS_REGISTRY:
    LOSS_REGISTRY.register()(PerceptualStub)


@pytest.mark.usefixtures('float64')
@pytest.mark.parametrize('pixel, style', [(True, 0.3), (True, None), (False, 0.3)])
def test_srmodel_step_is_gradient_descent_on_pixel_plus_perceptual_plus_style(pixel, style, tmp_path):
    """BasicSR's SRModel objective through our step: ``l_pix + l_percep + l_style``, each logged; a None
    style term is neither logged nor added."""
    pixel_opt = {'type': 'SPLoss', 'alpha': 2.0} if pixel else None
    perceptual_opt = {'type': 'PerceptualStub', 'perceptual_weight': 2.0, 'style_weight': style}
    model = build(step_options(tmp_path, 'SRModel', tiny_edsr(), pixel_opt, SR_LR, perceptual_opt=perceptual_opt))
    batch = fixed_batch()
    model.feed_data(batch)
    net_before, before = copy.deepcopy(model.net_g), parameters(model.net_g)
    model.optimize_parameters(1)

    terms = {'l_percep': lambda out: PerceptualStub(2.0, style)(out, batch['gt'])[0]}
    if pixel:
        terms['l_pix'] = lambda out: build_loss({'type': 'SPLoss', 'alpha': 2.0})(out, batch['gt'])
    if style is not None:
        terms['l_style'] = lambda out: PerceptualStub(2.0, style)(out, batch['gt'])[1]
    with torch.no_grad():
        out_before, out_after = net_before(batch['lq']), model.net_g(batch['lq'])
        expected = {name: term(out_before).item() for name, term in terms.items()}
        value_before = sum(expected.values())
        value_after = sum(term(out_after).item() for term in terms.values())
    assert model.get_current_log() == pytest.approx(expected, rel=1e-9)
    assert_gradient_step(value_before, value_after, before, model.net_g, SR_LR)


@pytest.mark.parametrize('model_type', ['SRModel', 'FGDModel', 'TLWModel'])
def test_a_step_updates_the_ema_copy_by_ema_decay(tmp_path, model_type):
    """``net_g_ema = decay * net_g_ema + (1 - decay) * net_g`` after each step that stepped."""
    network_g, pixel_opt, train = tiny_edsr(), {'type': 'L1Loss'}, {}
    if model_type == 'FGDModel':
        network_g, pixel_opt = {'type': 'FGDNet', 'backbone': tiny_edsr()}, {'type': 'FineGrainedDynamicLoss'}
    if model_type == 'TLWModel':
        pixel_opt = {'type': 'TLWLoss'}
        train = {'optim_w': {'type': 'Adam', 'lr': 1e-3}, 'tlw': {'judge': {'type': 'l1'}, 'iters_per_epoch': 1}}
    opt = step_options(tmp_path, model_type, network_g, pixel_opt, SR_LR, **train)
    opt['train'].update(ema_decay=0.25, optim_g={'type': 'Adam', 'lr': 1e-2})  # a first step of ~1e-2 per weight
    if model_type == 'TLWModel':
        opt['network_w'] = {'type': 'TLWWeightingNet', 'num_feat': 4}
    model = build(opt)
    ema_before = parameters(model.net_g_ema)
    model.feed_data(fixed_batch())
    model.optimize_parameters(1)
    assert_ema_step(model, ema_before, 0.25)


# ---- FGDModel ----------------------------------------------------------------------------------------------

FGD_LR = 1e-4
# distinct, so a term weighted by another term's coefficient changes the total
FGD_COEFFICIENTS = {'alpha': 0.3, 'beta': 0.05, 'average_weight': 0.2, 'sr_weight': 0.7}
FGD_TERMS = {'alpha': 'l_c1', 'beta': 'l_c2', 'average_weight': 'l_avg', 'sr_weight': 'l_sr'}


def fgd_options(tmp_path, lr=FGD_LR, **loss):
    network_g = {'type': 'FGDNet', 'backbone': tiny_edsr(), 'area_sizes': [3, 5, 7], 'class_module': {'num_feat': 8}}
    pixel_opt = {'type': 'FineGrainedDynamicLoss', **FGD_COEFFICIENTS, **loss}
    return step_options(tmp_path, 'FGDModel', network_g, pixel_opt, lr)


def fgd_step(opt):
    """(the log, the update of net_g) of one step on the fixed batch."""
    model = build(opt)
    model.feed_data(fixed_batch())
    before = parameters(model.net_g)
    model.optimize_parameters(1)
    return model.get_current_log(), update(before, model.net_g)


@pytest.mark.usefixtures('float64')
@pytest.mark.parametrize('loss_weight', [1.0, 0.5])
def test_fgd_logged_total_is_the_eq6_sum_of_the_logged_terms(loss_weight, tmp_path):
    log, _ = fgd_step(fgd_options(tmp_path, loss_weight=loss_weight))
    assert {'l_total', 'l_r', *FGD_TERMS.values()} <= set(log)  # other entries (diagnostics) may follow
    expected = log['l_r'] + sum(c * log[FGD_TERMS[name]] for name, c in FGD_COEFFICIENTS.items())
    assert log['l_total'] == pytest.approx(loss_weight * expected, rel=1e-6)


@pytest.mark.usefixtures('float64')
@pytest.mark.parametrize('coefficient', FGD_COEFFICIENTS)
def test_fgd_each_coefficient_scales_its_term_in_the_update(coefficient, tmp_path):
    value = FGD_COEFFICIENTS[coefficient]
    _, step = fgd_step(fgd_options(tmp_path, **{coefficient: value}))
    _, step_without = fgd_step(fgd_options(tmp_path, **{coefficient: 0.0}))
    _, step_double = fgd_step(fgd_options(tmp_path, **{coefficient: 2 * value}))
    contribution = step - step_without
    assert contribution.norm() > 1e-3 * step.norm(), f'{FGD_TERMS[coefficient]} does not reach the update'
    # the gradient is linear in each coefficient: doubling it adds the same again
    assert (step_double - step - contribution).norm() <= 1e-3 * contribution.norm()


@pytest.mark.usefixtures('float64')
def test_fgd_step_moves_every_part_of_fgdnet_and_lowers_the_logged_total(tmp_path):
    model = build(fgd_options(tmp_path))
    model.feed_data(fixed_batch())
    before = parameters(model.net_g)
    model.optimize_parameters(1)
    first = model.get_current_log()
    assert moved(before, model.net_g) == set(before)  # backbone, bin head and Class-Module
    assert log_after_step(model, 1)['l_total'] < first['l_total']


@pytest.mark.usefixtures('float64')
def test_fgd_l_r_alone_is_the_total_and_drives_the_update_when_every_coefficient_is_0(tmp_path):
    # No first-order check as for the other models: a step flips the predicted bin of a few pixels, and
    # their confined output jumps by a fraction of a bin, so the total is not smooth in the weights.
    log, step = fgd_step(fgd_options(tmp_path, **dict.fromkeys(FGD_COEFFICIENTS, 0.0)))
    assert log['l_total'] == pytest.approx(log['l_r'], rel=1e-9)
    assert step.norm() > 0, 'l_r does not reach the update'
