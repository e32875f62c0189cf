"""AsymmetricLoss, eq. (1), (2), (5) and the Table 1 variant, checked by hand on a 2x2 image."""
import math

import numpy as np
import pytest
import torch
import yaml
from basicsr.losses import build_loss

from losses_plugin.losses.asymmetric_loss import AsymmetricLoss, grey_image, grey_weight_mask, lower_quartile

GREY = torch.tensor([[0., .25], [.5, 1.]]).view(1, 1, 2, 2)  # already min-max normalised
TANH_INVERSE = [1.0, 0.5 * math.tanh(4) + 0.5, 0.5 * math.tanh(2) + 0.5, 0.5 * math.tanh(1) + 0.5]
Q1 = 0.1875  # numpy.percentile([0, .25, .5, 1], 25): position 0.75 between 0 and .25
QUARTILE = [1.0, math.tanh(Q1 / .25), math.tanh(Q1 / .5), math.tanh(Q1 / 1.)]


def test_tanh_inverse_mask_by_hand():
    assert grey_weight_mask(GREY).flatten().tolist() == [pytest.approx(v, rel=1e-6) for v in TANH_INVERSE]


def test_quartile_mask_by_hand():
    assert grey_weight_mask(GREY, mask='quartile').flatten().tolist() == [pytest.approx(v, rel=1e-6) for v in QUARTILE]


def test_normalisation_is_min_max_per_image():
    shifted = torch.cat([GREY * 0.5 + 0.2, GREY * 0.1 + 0.7])  # two images, other ranges
    mask = grey_weight_mask(shifted)
    assert torch.allclose(mask[0], grey_weight_mask(GREY)[0]) and torch.allclose(mask[1], grey_weight_mask(GREY)[0])
    unnormalised = grey_weight_mask(GREY * 0.5 + 0.2, normalize=False)
    assert unnormalised[0, 0, 0, 0].item() == pytest.approx(0.5 * math.tanh(1 / 0.2) + 0.5, rel=1e-6)


def test_constant_image_gives_finite_weights():
    mask = grey_weight_mask(torch.full((1, 3, 4, 4), 0.6))
    assert torch.isfinite(mask).all() and torch.equal(mask, torch.ones_like(mask))


def test_grey_is_bt601_luma_of_rgb():
    rgb = torch.tensor([1., 0., 0., 0., 1., 0., 0., 0., 1.]).view(3, 3, 1, 1).permute(1, 0, 2, 3)  # R, G, B pixels
    assert grey_image(rgb).flatten().tolist() == [pytest.approx(0.299), pytest.approx(0.587), pytest.approx(0.114)]
    assert grey_image(rgb, per_channel=True) is rgb
    with pytest.raises(ValueError, match='1 or 3 channels'):
        grey_image(torch.rand(1, 4, 2, 2))


@pytest.mark.parametrize('shape', [(5, 2, 7, 9), (2, 1, 4, 4), (3, 1, 1, 5), (2, 3, 3, 3)])
def test_lower_quartile_matches_numpy_per_image(shape):
    images = torch.rand(shape)
    expected = np.percentile(images.flatten(2).numpy(), 25, axis=2)
    assert np.allclose(lower_quartile(images).squeeze(-1).squeeze(-1).numpy(), expected, atol=1e-7)
    ties = (images * 4).round() / 4  # repeated values at the order statistics
    expected = np.percentile(ties.flatten(2).numpy(), 25, axis=2)
    assert np.allclose(lower_quartile(ties).squeeze(-1).squeeze(-1).numpy(), expected, atol=1e-7)


@pytest.mark.parametrize('values', ['uniform', 'ties on bucket edges', 'outside [0, 1]', 'one bucket', 'dark',
                                    'second bucket', 'above 1'])
@pytest.mark.parametrize('size', [4096, 4097, 4098, 4099])  # the quartile's position: every fraction .0 .25 .5 .75
def test_lower_quartile_by_buckets_matches_numpy(values, size):
    """Images large enough that the radix select matters (1024 buckets), with values that stress it: ties on
    the buckets' edges, values outside [0, 1] (the end buckets), all values in one bucket, most of them in
    the first."""
    torch.manual_seed(size)
    images = torch.rand(3, 2, size)
    if values == 'ties on bucket edges':
        images = (images * 64).round() / 1024  # multiples of a bucket width, many equal values
    elif values == 'outside [0, 1]':
        images = images * 6 - 3
    elif values == 'one bucket':
        images = 0.5 + images * 1e-4
    elif values == 'dark':
        images = images ** 8
    elif values == 'second bucket':  # the quartile in bucket 1, a quarter of the values in bucket 0 below it
        images = images * 0.004
    elif values == 'above 1':  # three quarters in the last bucket, the rest spread below it
        images = images * 10
    expected = np.percentile(images.double().numpy(), 25, axis=2)
    assert np.allclose(lower_quartile(images.view(3, 2, 1, size)).view(3, 2).double().numpy(), expected,
                       rtol=0, atol=4e-7 * max(1, float(images.abs().max())))


def test_mask_ranges():
    target = torch.rand(8, 3, 16, 16)
    tanh_inverse = grey_weight_mask(target)
    assert tanh_inverse.shape == (8, 1, 16, 16)
    assert tanh_inverse.min() >= 0.5 * math.tanh(1) + 0.5 - 1e-6 and tanh_inverse.max() <= 1
    quartile = grey_weight_mask(target, mask='quartile', per_channel=True)
    assert quartile.shape == target.shape and quartile.min() >= 0 and quartile.max() <= 1


def test_loss_by_hand_each_apply_and_base():
    pred = GREY + torch.tensor([[.1, -.2], [.3, -.4]]).view(1, 1, 2, 2)
    error = (pred - GREY).flatten()
    m = torch.tensor(TANH_INVERSE)
    cases = {('l1', 'loss'): (m * error.abs()).mean(), ('mse', 'loss'): (m * error ** 2).mean(),
             ('l1', 'io'): (m * error).abs().mean(), ('mse', 'io'): ((m * error) ** 2).mean(),
             ('charbonnier', 'loss'): (m * torch.sqrt(error ** 2 + 1e-12)).mean()}
    for (base, apply), expected in cases.items():
        loss = AsymmetricLoss(base=base, apply=apply)(pred, GREY)
        assert loss.item() == pytest.approx(expected.item(), rel=1e-5), (base, apply)


def test_dark_pixels_weigh_more():
    target = torch.tensor([[.05, .9]]).view(1, 1, 1, 2)
    pred = target + 0.1
    per_pixel = AsymmetricLoss(reduction='none')(pred, target)
    assert per_pixel[0, 0, 0, 0] > per_pixel[0, 0, 0, 1]


def test_gradient_treats_mask_as_constant_gradcheck():
    torch.manual_seed(0)
    pred = torch.rand(2, 3, 5, 6, dtype=torch.float64, requires_grad=True)
    target = torch.rand(2, 3, 5, 6, dtype=torch.float64)
    mask = grey_weight_mask(target)
    for options in ({'base': 'mse'}, {'base': 'l1', 'mask': 'quartile', 'apply': 'io'}, {'base': 'charbonnier'}):
        assert torch.autograd.gradcheck(AsymmetricLoss(**options), (pred, target))
    pred32 = pred.detach().float().requires_grad_()
    target32 = target.float().requires_grad_()
    AsymmetricLoss(base='mse')(pred32, target32).backward()
    expected = 2 * mask.float() * (pred32 - target32) / pred32.numel()
    assert torch.allclose(pred32.grad, expected, atol=1e-7)
    assert torch.allclose(target32.grad, -expected, atol=1e-7)  # no gradient through the mask


def test_video_half_and_registry():
    video = torch.rand(2, 3, 3, 8, 8)
    target = torch.rand(2, 3, 3, 8, 8)
    assert torch.allclose(AsymmetricLoss()(video, target), AsymmetricLoss()(video.view(6, 3, 8, 8), target.view(6, 3, 8, 8)))
    assert AsymmetricLoss()(video.half(), target.half()).dtype == torch.float32
    loss = build_loss(yaml.safe_load('type: AsymmetricLoss\nbase: mse\nmask: quartile\napply: io'))
    assert (loss.base, loss.mask, loss.apply) == ('mse', 'quartile', 'io')


@pytest.mark.parametrize('options, message', [
    ({'base': 'huber'}, "option 'base' must be one of"),
    ({'mask': 'sigmoid'}, "option 'mask' must be one of 'tanh_inverse', 'quartile'"),
    ({'apply': 'both'}, "option 'apply' must be one of 'loss', 'io'"),
    ({'normalize': 'yes'}, "option 'normalize' must be one of True, False"),
])
def test_invalid_options(options, message):
    with pytest.raises(ValueError, match=f'AsymmetricLoss: {message}'):
        AsymmetricLoss(**options)


def test_inf_target_is_named_and_inf_pred_passes_through():
    target = torch.rand(1, 3, 4, 4)
    bad = target.clone()
    bad[0, 1, 2, 2] = float('inf')
    with pytest.raises(ValueError, match='AsymmetricLoss: target contains NaN or Inf'):
        AsymmetricLoss()(target, bad)
    # a diverging network's output: the loss is non-finite and the training step's non-finite policy reports it
    assert not torch.isfinite(AsymmetricLoss()(bad, target))


@pytest.mark.parametrize('options', [{'base': 'l1'}, {'base': 'mse'}, {'base': 'l1', 'apply': 'io'},
                                     {'base': 'mse', 'apply': 'io', 'mask': 'quartile'}])
def test_reduced_fast_route_equals_the_loss_map(options):
    """The one-node route for reduced losses against the literal per-pixel map: values and gradients."""
    torch.manual_seed(2)
    target = torch.rand(2, 3, 7, 9, dtype=torch.float64, requires_grad=True)
    pred = torch.rand(2, 3, 7, 9, dtype=torch.float64, requires_grad=True)
    loss = AsymmetricLoss(**options)
    fast = loss(pred, target)
    literal = loss.loss_map(pred, target).mean()
    assert torch.allclose(fast, literal, rtol=1e-12)
    for a, b in zip(torch.autograd.grad(fast, (pred, target)), torch.autograd.grad(literal, (pred, target))):
        assert torch.allclose(a, b, rtol=1e-10, atol=1e-15)


def test_per_channel_masks_normalise_each_channel_on_its_own():
    """per_channel: each channel's mask is the mask of that channel alone (eq. 1 min-max per channel)."""
    target = torch.stack([GREY[0, 0] * 0.5 + 0.2, GREY[0, 0] * 0.1 + 0.7, GREY[0, 0]]).unsqueeze(0)  # other ranges
    for mask in ('tanh_inverse', 'quartile'):
        per_channel = grey_weight_mask(target, mask=mask, per_channel=True)
        for c in range(3):
            assert torch.allclose(per_channel[:, c:c + 1], grey_weight_mask(GREY, mask=mask), atol=1e-6), (mask, c)


@pytest.mark.parametrize('options', [{'base': 'charbonnier'}, {'base': 'l1', 'reduction': 'none'},
                                     {'base': 'mse', 'apply': 'io', 'mask': 'quartile', 'reduction': 'none'}])
def test_no_gradient_flows_through_the_mask_on_the_per_pixel_route(options):
    """The mask is a constant of the label (detached): d/d target = -d/d pred on every route, including
    the per-pixel loss map (charbonnier, reduction 'none'), not only the fast reduced one."""
    torch.manual_seed(4)
    pred = torch.rand(2, 3, 5, 6, dtype=torch.float64, requires_grad=True)
    target = torch.rand(2, 3, 5, 6, dtype=torch.float64, requires_grad=True)
    AsymmetricLoss(**options)(pred, target).sum().backward()
    assert torch.allclose(target.grad, -pred.grad, atol=1e-12)
