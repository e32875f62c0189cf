"""SPLoss, eq. (1)-(4) of the edge-aware paper, checked by hand on a 3x3 image."""
import pytest
import torch
import yaml
from basicsr.losses import build_loss
from basicsr.losses.basic_loss import L1Loss

from losses_plugin.losses.sp_loss import SPLoss, blur_factor_map, laplacian

# A bright peak: with replicate padding its Laplacian is [[0, 1, 0], [1, -4, 1], [0, 1, 0]].
TARGET = torch.tensor([[0., 0., 0.], [0., 1., 0.], [0., 0., 0.]], dtype=torch.float64).view(1, 1, 3, 3)
ERROR = torch.tensor([[.1, .2, -.1], [-.3, -.5, .4], [0., -.2, .1]], dtype=torch.float64).view(1, 1, 3, 3)
# eq. (2), case by case: (0,1) lap>0,e>0 -> 1; (1,0) lap>0,e<=0 -> 0; (0,0) lap<=0,e>0 -> 0;
# (1,1) lap<=0,e<=0 -> |-4|; (1,2) lap>0,e>0 -> 1; zero-Laplacian pixels give |0| = 0.
BLUR_FACTOR = torch.tensor([[0., 1., 0.], [0., 4., 1.], [0., 0., 0.]], dtype=torch.float64).view(1, 1, 3, 3)


def test_laplacian_by_hand():
    expected = torch.tensor([[0., 1., 0.], [1., -4., 1.], [0., 1., 0.]], dtype=torch.float64)
    assert torch.equal(laplacian(TARGET)[0, 0], expected)


def test_blur_factor_map_sign_cases():
    assert torch.equal(blur_factor_map(TARGET + ERROR, TARGET), BLUR_FACTOR)


def test_loss_by_hand():
    # w = 1 + 2m = [[1,3,1],[1,9,3],[1,1,1]]; sum(w|e|) = .1+.6+.1+.3+4.5+1.2+0+.2+.1 = 7.1
    loss = SPLoss(alpha=2.0)(TARGET + ERROR, TARGET)
    assert loss.dtype == torch.float64
    assert loss.item() == pytest.approx(7.1 / 9, rel=1e-12)
    per_pixel = SPLoss(alpha=2.0, reduction='none')(TARGET + ERROR, TARGET)
    assert torch.allclose(per_pixel.double(), (1 + 2 * BLUR_FACTOR) * ERROR.abs(), atol=1e-6)
    assert SPLoss(alpha=2.0, reduction='sum')(TARGET + ERROR, TARGET).item() == pytest.approx(7.1, rel=1e-6)


def test_data_range_rescales_the_laplacian_not_the_weights():
    loss_255 = SPLoss(alpha=2.0, data_range=255.)((TARGET + ERROR) * 255, TARGET * 255)
    assert loss_255.item() == pytest.approx(255 * 7.1 / 9, rel=1e-5)


def test_alpha_zero_is_l1_to_the_last_bit():
    pred, target = torch.rand(4, 3, 17, 19), torch.rand(4, 3, 17, 19)
    assert torch.equal(SPLoss(alpha=0)(pred, target), L1Loss()(pred, target))


def test_bases():
    pred, target = TARGET + ERROR, TARGET
    w = (1 + 2 * BLUR_FACTOR)
    assert SPLoss(base='mse')(pred, target).item() == pytest.approx((w * ERROR ** 2).mean().item(), rel=1e-5)
    charbonnier = (w * torch.sqrt(ERROR ** 2 + 1e-12)).mean().item()
    assert SPLoss(base='charbonnier')(pred, target).item() == pytest.approx(charbonnier, rel=1e-5)


def test_gradcheck_float64():
    torch.manual_seed(0)
    pred = torch.rand(2, 3, 6, 7, dtype=torch.float64, requires_grad=True)
    target = torch.rand(2, 3, 6, 7, dtype=torch.float64)
    for base in ('l1', 'mse', 'charbonnier'):
        assert torch.autograd.gradcheck(SPLoss(alpha=3.0, base=base), (pred, target))
    # and the gradient is w * sign(e) / N with the weights held constant (detached)
    loss = SPLoss(alpha=3.0)
    (grad,) = torch.autograd.grad(loss(pred, target), pred)
    expected = loss.weight_map(pred, target) * torch.sign(pred - target) / pred.numel()
    assert torch.allclose(grad, expected, rtol=1e-12)


def test_weight_map_is_detached_and_video_tensors_work():
    pred = torch.rand(2, 4, 3, 8, 8, requires_grad=True)
    target = torch.rand(2, 4, 3, 8, 8)
    assert not SPLoss().weight_map(pred, target).requires_grad
    as_images = SPLoss()(pred.reshape(8, 3, 8, 8), target.reshape(8, 3, 8, 8))
    assert torch.allclose(SPLoss()(pred, target), as_images)


def test_half_precision_is_computed_in_float32():
    pred, target = torch.rand(2, 3, 8, 8), torch.rand(2, 3, 8, 8)
    half = SPLoss()(pred.half(), target.half())
    assert half.dtype == torch.float32
    assert torch.allclose(half, SPLoss()(pred.half().float(), target.half().float()))
    assert SPLoss()(pred.bfloat16(), target.bfloat16()).dtype == torch.float32


def test_built_from_yaml_by_the_registry():
    loss = build_loss(yaml.safe_load('type: SPLoss\nalpha: 3.0\nbase: charbonnier\nloss_weight: 0.5'))
    assert isinstance(loss, SPLoss) and (loss.alpha, loss.base, loss.loss_weight) == (3.0, 'charbonnier', 0.5)


@pytest.mark.parametrize('options, message', [
    ({'alpha': -1}, "option 'alpha' must be >= 0"),
    ({'base': 'l3'}, "option 'base' must be one of 'l1', 'mse', 'charbonnier', got 'l3'"),
    ({'reduction': 'avg'}, "option 'reduction' must be one of"),
    ({'data_range': 0}, "option 'data_range' must be > 0"),
    ({'alpha': 'two'}, "option 'alpha' must be a number"),
])
def test_invalid_options(options, message):
    with pytest.raises(ValueError, match=f'SPLoss: {message}'):
        SPLoss(**options)


def test_invalid_inputs():
    x = torch.rand(1, 3, 4, 4)
    with pytest.raises(ValueError, match=r'SPLoss: pred and target must have the same shape'):
        SPLoss()(x, torch.rand(1, 3, 4, 5))
    with pytest.raises(ValueError, match='SPLoss: target must be a floating-point tensor'):
        SPLoss()(x, (x * 255).to(torch.uint8))
    with pytest.raises(ValueError, match=r'SPLoss: expected \(N, C, H, W\)'):
        SPLoss()(x[0], x[0])
    bad = x.clone()
    bad[0, 0, 0, 0] = float('nan')
    with pytest.raises(ValueError, match='SPLoss: target contains NaN or Inf'):
        SPLoss()(x, bad)
    assert torch.isnan(SPLoss()(bad, x))  # a diverging network: the training step's non-finite policy reports it
    with pytest.raises(ValueError, match='SPLoss: weight of shape'):
        SPLoss()(x, x, weight=torch.ones(2, 3, 4, 4))


def test_basicsr_weight_argument_keeps_a_plain_mean():
    pred, target = TARGET + ERROR, TARGET
    weight = torch.zeros_like(TARGET)
    weight[..., 1, 1] = 1
    assert SPLoss()(pred, target, weight=weight).item() == pytest.approx(9 * .5 / 9, rel=1e-6)


@pytest.mark.parametrize('base', ['l1', 'mse'])
def test_reduced_fast_route_equals_the_loss_map(base):
    """The one-node route for reduced losses against the literal per-pixel map: values and gradients
    for pred and target, with e = 0 on some pixels."""
    torch.manual_seed(3)
    target = torch.rand(2, 3, 8, 10, dtype=torch.float64, requires_grad=True)
    pred = (target.detach() + 0.2 * torch.randn(2, 3, 8, 10, dtype=torch.float64)).requires_grad_()
    pred.data[0, 0, :2] = target.data[0, 0, :2]
    loss = SPLoss(alpha=2.5, base=base, reduction='sum')
    fast = loss(pred, target)
    literal = loss.loss_map(pred, target).sum()
    assert torch.allclose(fast, literal, rtol=1e-12)
    for a, b in zip(torch.autograd.grad(fast, (pred, target)), torch.autograd.grad(literal, (pred, target))):
        assert torch.allclose(a, b, rtol=1e-10, atol=1e-15)


def test_laplacian_equals_replicate_padded_convolution():
    import torch.nn.functional as F
    img = torch.rand(2, 3, 7, 5, dtype=torch.float64)
    kernel = torch.tensor([[0., 1., 0.], [1., -4., 1.], [0., 1., 0.]], dtype=torch.float64).expand(3, 1, 3, 3)
    reference = F.conv2d(F.pad(img, (1, 1, 1, 1), mode='replicate'), kernel, groups=3)
    assert torch.allclose(laplacian(img), reference, atol=1e-14)
    row = torch.rand(1, 1, 1, 4, dtype=torch.float64)  # one row: up and down are the pixel itself
    assert torch.allclose(laplacian(row), F.conv2d(F.pad(row, (1, 1, 1, 1), mode='replicate'), kernel[:1]), atol=1e-14)


def test_blur_factor_map_where_the_error_is_zero_follows_eq2():
    """Eq. (2) puts e = 0 with e <= 0: the map is |lap| where lap <= 0 (the peak) and 0 where lap > 0."""
    expected = torch.tensor([[0., 0., 0.], [0., 4., 0.], [0., 0., 0.]], dtype=torch.float64).view(1, 1, 3, 3)
    assert torch.equal(blur_factor_map(TARGET, TARGET), expected)


@pytest.mark.parametrize('base', ['l1', 'charbonnier'])
def test_data_range_rescales_the_laplacian_on_the_per_pixel_route_too(base):
    """reduction 'none' and charbonnier go through the weight map, not the fast reduced route: on the
    0-255 scale with data_range 255 the weights are the [0, 1] ones, so the map is 255 times the [0, 1] map."""
    pred, target = TARGET + ERROR, TARGET
    on_255 = SPLoss(base=base, data_range=255., reduction='none')(pred * 255, target * 255)
    on_1 = SPLoss(base=base, reduction='none')(pred, target)
    assert torch.allclose(on_255, 255 * on_1, rtol=1e-6, atol=1e-3)  # charbonnier's eps does not scale
    assert SPLoss(base=base, data_range=255.)(pred * 255, target * 255).item() == pytest.approx(
        255 * on_1.mean().item(), rel=1e-6)
