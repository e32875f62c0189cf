"""The gaps the mutation run of `losses_plugin/losses` found (docs/mutation.md, "Real gaps in the tests"):
the papers' defaults, option errors that name the loss and the option, and the paths no other test took
(FGD's static and average-loss totals, per-channel masks, unreduced SPLoss maps, the SSIM family's weight
maps, a judge with another sigma, TLW's argument checks and half-precision weights)."""
import pytest
import torch

from losses_plugin.checks import OptionError
from losses_plugin.losses.asymmetric_loss import AsymmetricLoss, grey_weight_mask
from losses_plugin.losses.edge_loss import EdgeLoss
from losses_plugin.losses.fgd_loss import FineGrainedDynamicLoss, average_loss, class_loss
from losses_plugin.losses.ms_ssim_l1_loss import MSSSIML1Loss
from losses_plugin.losses.ms_ssim_loss import MSSSIMLoss, ms_ssim_sigmas_map
from losses_plugin.losses.sp_loss import SPLoss, blur_factor_map
from losses_plugin.losses.ssim_loss import SSIMLoss
from losses_plugin.losses.tlw_judge import build_judge
from losses_plugin.losses.tlw_loss import TLWLoss, weight_criterion
from losses_plugin.losses.weighted_error import weighted_error_sum


def images(*shape, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.rand(*shape, generator=g), torch.rand(*shape, generator=g)


def test_fgd_defaults_are_ours_and_the_papers():
    loss = FineGrainedDynamicLoss()
    assert (loss.alpha, loss.beta, loss.average_weight, loss.sr_weight, loss.loss_weight) == (0.1, 0.01, 0.0, 1.0, 1.0)
    assert loss.regression_target == 'gt'


def fgd_inputs(with_probs=True):
    torch.manual_seed(0)
    out, target = images(2, 3, 8, 8)
    logits = torch.randn(2, 4, 3, 8, 8)
    probs = torch.softmax(torch.randn(2, 3, 2, 2), dim=1) if with_probs else None
    sr = (out + 0.1).clamp(0, 1)
    return out, target, logits, probs, sr


def test_fgd_static_total_has_no_class_terms():
    out, target, logits, _, sr = fgd_inputs(with_probs=False)
    loss = FineGrainedDynamicLoss(alpha=0.3, beta=0.7, sr_weight=0.5, loss_weight=2.0)
    terms = loss.terms(out, target, logits, None, sr)
    assert sorted(terms) == ['l_c1', 'l_r', 'l_sr']
    expected = 2.0 * (terms['l_r'] + 0.3 * terms['l_c1'] + 0.5 * terms['l_sr'])
    assert torch.allclose(loss.total(terms), expected)
    assert torch.allclose(loss(out, target, logits, None, sr), expected)


def test_fgd_average_loss_is_classsrs_and_enters_the_total_by_its_weight():
    out, target, logits, probs, sr = fgd_inputs()
    loss = FineGrainedDynamicLoss(alpha=0.3, beta=0.7, average_weight=0.4, sr_weight=0.5)
    terms = loss.terms(out, target, logits, probs, sr)
    by_hand = sum(abs(probs[:, i].mean() - 1 / 3) for i in range(3))
    assert torch.allclose(terms['l_avg'], by_hand) and torch.allclose(average_loss(probs), by_hand)
    assert torch.allclose(terms['l_c2'], class_loss(probs))
    expected = terms['l_r'] + 0.3 * terms['l_c1'] + 0.7 * terms['l_c2'] + 0.4 * terms['l_avg'] + 0.5 * terms['l_sr']
    assert torch.allclose(loss.total(terms), expected)
    assert 'l_avg' not in FineGrainedDynamicLoss().terms(out, target, logits, probs, sr)  # off by default


@pytest.mark.parametrize('loss_class, option, value, message', [
    (FineGrainedDynamicLoss, 'beta', -1, "FineGrainedDynamicLoss: option 'beta' must be >= 0"),
    (FineGrainedDynamicLoss, 'average_weight', 'x', "FineGrainedDynamicLoss: option 'average_weight' must be a number"),
    (FineGrainedDynamicLoss, 'sr_weight', -0.5, "FineGrainedDynamicLoss: option 'sr_weight' must be >= 0"),
    (FineGrainedDynamicLoss, 'loss_weight', None, "FineGrainedDynamicLoss: option 'loss_weight' must be a number"),
    (TLWLoss, 'mse_offset', -0.1, "TLWLoss: option 'mse_offset' must be >= 0"),
    (TLWLoss, 'form', 'sum', "TLWLoss: option 'form' must be one of 'weighted_sum', 'log_posterior'"),
    (MSSSIML1Loss, 'alpha', -0.1, "MSSSIML1Loss: option 'alpha' must be >= 0"),
    (MSSSIML1Loss, 'alpha', 1.5, r"MSSSIML1Loss: option 'alpha' must be in \[0, 1\]"),
    (MSSSIML1Loss, 'data_range', 0, "MSSSIML1Loss: option 'data_range' must be > 0"),
    (MSSSIMLoss, 'data_range', -1, "MSSSIMLoss: option 'data_range' must be > 0"),
    (SSIMLoss, 'data_range', 0, "SSIMLoss: option 'data_range' must be > 0"),
    (SSIMLoss, 'window_size', 2.5, "SSIMLoss: option 'window_size' must be an odd positive integer"),
    (SSIMLoss, 'window_size', 4, "SSIMLoss: option 'window_size' must be an odd positive integer"),
    (SPLoss, 'alpha', -1, "SPLoss: option 'alpha' must be >= 0"),
    (AsymmetricLoss, 'per_channel', 1, "AsymmetricLoss: option 'per_channel' must be one of True, False"),
    (AsymmetricLoss, 'normalize', 'yes', "AsymmetricLoss: option 'normalize' must be one of True, False"),
])
def test_bad_options_name_the_loss_and_the_option(loss_class, option, value, message):
    with pytest.raises(OptionError, match=f'^{message}'):
        loss_class(**{option: value})


def test_ssim_window_size_one_is_valid_and_sets_the_radius():
    assert SSIMLoss(window_size=1).radius == 0 and SSIMLoss(window_size=7).radius == 3
    assert SSIMLoss(sigma=2.0).radius == 7  # int(3.5 * 2 + 0.5)


def test_ms_ssim_map_defaults_are_unit_range_and_valid_padding():
    pred, target = images(1, 3, 40, 40)
    default = ms_ssim_sigmas_map(pred, target)
    assert default.shape[-2:] == (8, 8)  # 'valid' with the 33x33 support of sigma 8
    assert torch.equal(default, ms_ssim_sigmas_map(pred, target, data_range=1.0, padding='valid'))
    assert not torch.allclose(default, ms_ssim_sigmas_map(pred, target, data_range=255.0))


@pytest.mark.parametrize('loss', [SSIMLoss(), MSSSIMLoss(), MSSSIML1Loss()], ids=lambda l: type(l).__name__)
def test_ssim_family_weight_map_is_the_detached_loss_map(loss):
    pred, target = images(1, 3, 40, 40)
    pred.requires_grad_()
    weight = loss.weight_map(pred, target)
    assert not weight.requires_grad
    assert torch.allclose(weight, loss.loss_map(pred, target).detach())
    assert torch.allclose(loss(pred, target), weight.mean())


def test_asymmetric_defaults_and_a_per_channel_mask():
    loss = AsymmetricLoss()
    assert (loss.base, loss.mask, loss.apply, loss.normalize, loss.per_channel, loss.loss_weight, loss.reduction) == (
        'l1', 'tanh_inverse', 'loss', True, False, 1.0, 'mean')
    target = torch.zeros(1, 3, 2, 2)
    target[0, 0] = torch.tensor([[0.0, 1.0], [0.5, 0.25]])
    target[0, 1] = torch.tensor([[1.0, 0.0], [0.5, 0.25]])  # channel 2 stays black: a constant maps to 0
    per_channel = grey_weight_mask(target, per_channel=True)
    assert per_channel.shape == (1, 3, 2, 2)
    normalized = target.clone()
    expected = 0.5 * torch.tanh(1 / (normalized + 1e-10)) + 0.5
    assert torch.allclose(per_channel, expected)
    pred = torch.rand(1, 3, 2, 2)
    assert torch.allclose(AsymmetricLoss(per_channel=True)(pred, target), (expected * (pred - target).abs()).mean())
    assert grey_weight_mask(target).shape == (1, 1, 2, 2)  # the default: one mask from the grey image


def test_unreduced_sploss_with_alpha_one_is_the_weighted_map():
    pred, target = images(2, 3, 6, 7)
    loss_map = SPLoss(alpha=1.0, reduction='none')(pred, target)
    assert torch.allclose(loss_map, (1 + blur_factor_map(pred, target)) * (pred - target).abs())
    assert torch.allclose(SPLoss(alpha=0.0, reduction='none')(pred, target), (pred - target).abs())


def test_ssim_judge_uses_its_sigma():
    pred, target = images(2, 3, 40, 40)
    judge = build_judge({'type': 'ssim', 'sigma': 3.0})
    expected = SSIMLoss(sigma=3.0, reduction='none')(pred, target).mean(dim=(1, 2, 3))
    assert torch.allclose(judge(pred, target), expected, atol=1e-6)
    assert not torch.allclose(build_judge({'type': 'ssim'})(pred, target), expected, atol=1e-4)


def test_tlw_loss_needs_both_weights_and_criteria_and_their_shapes():
    pred, target = images(2, 3, 5, 4)
    weights, wc = torch.rand(3, 2, 3, 5, 4), torch.rand(3, 2) + 0.5
    loss = TLWLoss()
    for args in ((weights, None), (None, wc)):
        with pytest.raises(ValueError, match='TLWLoss needs the sampled weights and their criteria'):
            loss(pred, target, *args)
    with pytest.raises(ValueError, match=r'TLWLoss: expected weights .* and wc \(T, 2\), got .* and \(3, 1\)'):
        loss(pred, target, weights, wc[:, :1])


@pytest.mark.parametrize('dtype', [torch.float16, torch.bfloat16])
def test_tlw_loss_computes_half_precision_weights_in_float32(dtype):
    pred, target = images(2, 3, 5, 4)
    weights, wc = torch.rand(3, 2, 3, 5, 4), torch.rand(3, 2) + 0.5
    half_weights, half_wc = weights.to(dtype), wc.to(dtype)
    for form in ('weighted_sum', 'log_posterior'):
        loss = TLWLoss(form=form)
        got = loss(pred, target, half_weights, half_wc)
        assert got.dtype == torch.float32
        assert torch.allclose(got, loss(pred, target, half_weights.float(), half_wc.float()), rtol=1e-6)


def test_weighted_error_sum_with_weights_that_read_the_error():
    """W = |e| (detached): sum W|e| = sum e^2, and the gradient treats W as a constant: W sign(e)."""
    pred, target = images(2, 3, 4, 4)
    pred.requires_grad_()
    total = weighted_error_sum(pred, target, 'l1', lambda _t, error, sign: error.abs() * sign.abs())
    error = (pred - target).detach()
    assert torch.allclose(total, error.square().sum())
    total.backward()
    assert torch.allclose(pred.grad, error.abs() * torch.sign(error))
    pred.grad = None
    total = weighted_error_sum(pred, target, 'mse', lambda _t, error, sign: 1 + error.abs() * (sign is None))
    assert torch.allclose(total, ((1 + error.abs()) * error.square()).sum())


def test_fgd_static_total_ignores_the_average_weight():
    """A static area has no class probabilities, so no average loss: its weight adds nothing to the total."""
    out, target, logits, _, sr = fgd_inputs(with_probs=False)
    loss = FineGrainedDynamicLoss(alpha=0.3, sr_weight=0.5, average_weight=0.9)
    terms = loss.terms(out, target, logits, None, sr)
    assert 'l_avg' not in terms
    assert torch.allclose(loss.total(terms), terms['l_r'] + 0.3 * terms['l_c1'] + 0.5 * terms['l_sr'])


@pytest.mark.parametrize('loss', [EdgeLoss(), TLWLoss()], ids=['EdgeLoss', 'TLWLoss'])
def test_losses_compute_in_float32_under_bfloat16_autocast(loss):
    """Under train.amp the losses run inside autocast; their own arithmetic stays float32 (a bfloat16
    convolution or reduction would move the value by ~1e-3)."""
    pred, target = images(2, 3, 16, 16)
    args = () if isinstance(loss, EdgeLoss) else (torch.rand(3, 2, 3, 16, 16), torch.rand(3, 2) + 0.5)
    expected = loss(pred.double(), target.double(), *(a.double() for a in args))  # float64: autocast leaves it
    for context in (torch.autocast('cpu', dtype=torch.bfloat16), torch.autocast('cpu', enabled=False)):
        with context:
            got = loss(pred, target, *args)
        assert got.dtype == torch.float32 and torch.allclose(got.double(), expected, rtol=1e-6, atol=0)


def test_weight_criterion_with_a_plain_callable_judge():
    """A judge without the shared-reference interface (any callable D(img, ref) -> (N,)) gets each image
    paired with its own gt: the same WC as the packaged judge that computes the same distance."""
    torch.manual_seed(0)
    sr, gt = torch.rand(2, 3, 8, 8), torch.rand(2, 3, 8, 8)
    w = torch.rand(4, 2, 3, 8, 8)  # T = 4 samples

    def plain_l1(img, ref):
        return (img - ref).abs().mean(dim=(1, 2, 3))

    packaged = build_judge({'type': 'l1'})
    expected = weight_criterion(packaged, w, sr, gt)
    assert expected.shape == (4, 2)
    assert torch.allclose(weight_criterion(plain_l1, w, sr, gt), expected, rtol=1e-6)
    assert torch.allclose(weight_criterion(plain_l1, w[0], sr, gt), expected[0], rtol=1e-6)


def test_lower_quartile_of_an_image_with_nan_is_computed_not_raised():
    """A NaN in the label (a broken image) must give NaN weights the non-finite policy can catch, not a
    crash inside the quartile's bucket counting."""
    grey = torch.rand(1, 1, 64, 64)
    grey[0, 0, 3, 5] = float('nan')
    mask = grey_weight_mask(grey, mask='quartile', normalize=False)
    assert mask[0, 0, 3, 5].isnan() and mask.isfinite().sum() == 64 * 64 - 1
