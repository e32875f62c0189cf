"""TLW: the weight criterion (eq. 4), its judges, and the SR loss (eq. 11-13)."""
import math

import pytest
import pytorch_msssim
import torch
import torchvision

from losses_plugin.checks import OptionError
from losses_plugin.losses.ms_ssim_loss import ms_ssim_pyramid
from losses_plugin.losses.tlw_judge import LPIPSJudge, build_judge, pyramid_levels
from losses_plugin.losses.tlw_loss import TLWLoss, weight_criterion

JUDGES = [{'type': 'ms_ssim'}, {'type': 'ssim'}, {'type': 'l1'}, {'type': 'lpips', 'pretrained': False}]


def half_wrong(seed=0, size=64):
    """gt, and sr equal to gt except for noise in the left half; the mask of that half."""
    g = torch.Generator().manual_seed(seed)
    gt = torch.rand(2, 3, size, size, generator=g)
    wrong = torch.zeros(2, 3, size, size)
    wrong[..., : size // 2] = 1
    sr = torch.where(wrong.bool(), (gt + 0.3 * torch.randn(gt.shape, generator=g)).clamp(0, 1), gt)
    return gt, sr, wrong


@pytest.mark.parametrize('judge_opt', JUDGES, ids=lambda o: o['type'])
def test_wc_is_larger_for_weights_on_the_wrong_pixels(judge_opt):
    torch.manual_seed(0)
    judge = build_judge(judge_opt)
    gt, sr, wrong = half_wrong()
    good = weight_criterion(judge, wrong, sr, gt)  # x_w = gt, x_{1-w} = sr
    bad = weight_criterion(judge, 1 - wrong, sr, gt)  # x_w = sr, x_{1-w} = gt
    assert good.shape == (2,) and (good > 1).all() and (bad < 1).all() and (good > 10 * bad).all()
    # and weights that pick half the wrong pixels score in between
    half = wrong.clone()
    half[..., : wrong.shape[-1] // 4] = 0
    middle = weight_criterion(judge, half, sr, gt)
    assert ((bad < middle) & (middle < good)).all()


def test_wc_of_samples_equals_wc_of_each_sample():
    judge = build_judge({'type': 'ms_ssim'})
    gt, sr, _ = half_wrong(size=48)
    w = torch.rand(3, *gt.shape)
    batched = weight_criterion(judge, w, sr, gt)
    assert batched.shape == (3, 2)
    for i in range(3):
        assert torch.allclose(batched[i], weight_criterion(judge, w[i], sr, gt), rtol=1e-5)


def test_wc_by_hand_with_the_l1_judge():
    gt = torch.zeros(1, 1, 2, 2)
    sr = torch.tensor([[[[1.0, 0.0], [0.0, 0.0]]]])
    w = torch.tensor([[[[0.75, 0.0], [0.0, 0.0]]]])
    # x_w = 0.25 * sr -> D = 0.25/4; x_{1-w} = 0.75 * sr -> D = 0.75/4
    expected = (0.75 / 4 + 1e-3) / (0.25 / 4 + 1e-3)
    assert weight_criterion(build_judge({'type': 'l1'}), w, sr, gt).item() == pytest.approx(expected, rel=1e-6)


def test_ms_ssim_judge_equals_pytorch_msssim_at_five_levels():
    torch.manual_seed(0)
    x, y = torch.rand(2, 3, 176, 176), torch.rand(2, 3, 176, 176)
    y = 0.5 * x + 0.5 * y
    expected = 1 - pytorch_msssim.ms_ssim(x, y, data_range=1.0, size_average=False)
    assert torch.allclose(build_judge({'type': 'ms_ssim'})(x, y), expected, atol=1e-5)


def test_ms_ssim_judge_uses_the_levels_that_fit():
    assert [pyramid_levels(s, s) for s in (10, 11, 20, 21, 41, 81, 128, 161, 500)] == [0, 1, 1, 2, 3, 4, 4, 5, 5]
    judge = build_judge({'type': 'ms_ssim'})
    x = torch.rand(1, 3, 32, 32)
    assert judge(x, x).abs().max() < 1e-6
    with pytest.raises(ValueError, match='ms_ssim: images of \\(8, 8\\)'):
        judge(torch.rand(1, 3, 8, 8), torch.rand(1, 3, 8, 8))


@pytest.mark.parametrize('judge_opt', JUDGES, ids=lambda o: o['type'])
def test_judges_are_frozen_differentiable_in_the_image_and_zero_on_equal_images(judge_opt):
    judge = build_judge(judge_opt)
    judge.train()
    assert not any(p.requires_grad for p in judge.parameters())
    if judge_opt['type'] == 'lpips':  # the one judge with layers that train() would switch
        assert not judge.training and not any(m.training for m in judge.modules())
    x = torch.rand(2, 3, 48, 48)
    img = (x + 0.1).clamp(0, 1).requires_grad_()
    distance = judge(img, x)
    distance.sum().backward()
    assert distance.shape == (2,) and (distance > 0).all() and img.grad.abs().sum() > 0
    assert judge(x, x).abs().max() < 1e-5


def test_lpips_judge_without_weights_says_how_to_provide_them(tmp_path, monkeypatch):
    monkeypatch.setenv('TORCH_HOME', str(tmp_path / 'torch_home'))
    with pytest.raises(OptionError, match=r'vgg16-397923af\.pth.*torch hub cache.*weights_path.*ms_ssim'):
        build_judge({'type': 'lpips'})
    with pytest.raises(OptionError, match=r"'/nowhere/vgg.pth' do not exist.*train.tlw.judge.weights_path"):
        build_judge({'type': 'lpips', 'weights_path': '/nowhere/vgg.pth'})


def test_lpips_judge_loads_torchvision_vgg16_weights_from_a_path_or_the_hub_cache(tmp_path, monkeypatch):
    torch.manual_seed(0)
    state = torchvision.models.vgg16(weights=None).state_dict()  # stands in for the ImageNet file
    path = tmp_path / 'vgg16-397923af.pth'
    torch.save(state, path)
    judge = LPIPSJudge(weights_path=str(path))
    assert torch.equal(judge.lpips.net.slice1[0].weight, state['features.0.weight'])
    assert torch.equal(dict(judge.lpips.net.slice5.named_children())['28'].bias, state['features.28.bias'])
    monkeypatch.setenv('TORCH_HOME', str(tmp_path / 'home'))
    (tmp_path / 'home' / 'hub' / 'checkpoints').mkdir(parents=True)
    torch.save(state, tmp_path / 'home' / 'hub' / 'checkpoints' / 'vgg16-397923af.pth')
    from_cache = build_judge({'type': 'lpips'})
    assert torch.equal(dict(from_cache.lpips.net.slice3.named_children())['14'].weight, state['features.14.weight'])


def independent_distance(judge_type, lpips_net=None):
    """D(img, ref) of (N, C, H, W) pairs from an independent library or by hand."""
    import piq
    return {'ms_ssim': lambda x, y: 1 - pytorch_msssim.ms_ssim(x, y, data_range=1.0, size_average=False),
            'ssim': lambda x, y: 1 - piq.ssim(x, y, data_range=1.0, kernel_size=11, kernel_sigma=1.5,
                                              reduction='none'),
            'l1': lambda x, y: (x - y).abs().flatten(1).mean(dim=1),
            'lpips': lambda x, y: lpips_net(x, y, normalize=True).flatten()}[judge_type]


@pytest.mark.parametrize('judge_opt', JUDGES + [{'type': 'lpips', 'pretrained': False, 'linear': True}],
                         ids=lambda o: o['type'] + ('_linear' if o.get('linear') else ''))
def test_the_gt_side_computed_once_equals_each_pair_scored_by_an_independent_library(judge_opt):
    """``distance(img, reference(gt))``, S images per gt (image s*N + i against gt i), equals scoring every
    (image, gt) pair on its own: pytorch-msssim, piq, by hand, and the lpips package's own call."""
    torch.manual_seed(3)
    judge = build_judge(judge_opt)
    n, s, size = 2, 3, 176 if judge_opt['type'] == 'ms_ssim' else 32  # pytorch-msssim's five levels need > 160
    gt = torch.rand(n, 3, size, size)
    img = (gt + 0.2 * torch.randn(s, n, 3, size, size)).clamp(0, 1).reshape(s * n, 3, size, size)
    pairs_gt = gt.repeat(s, 1, 1, 1)  # row s*N + i holds gt i
    expected = independent_distance(judge_opt['type'], getattr(judge, 'lpips', None))(img, pairs_gt)
    assert torch.allclose(judge.distance(img, judge.reference(gt)), expected, rtol=1e-4, atol=1e-6)
    assert torch.allclose(judge(img, pairs_gt), expected, rtol=1e-4, atol=1e-6)


def test_unknown_judge_is_a_clear_error():
    with pytest.raises(ValueError, match="train.tlw.judge.type must be one of 'lpips'"):
        build_judge({'type': 'vgg'})
    with pytest.raises(ValueError, match='train.tlw.judge \\(ssim\\)'):
        build_judge({'type': 'ssim', 'window': 3})


# ---------------------------------------------------------------------------------------------- TLWLoss
def loss_inputs(seed=0, samples=3, dtype=torch.float64):
    g = torch.Generator().manual_seed(seed)
    pred = torch.rand(2, 3, 5, 4, generator=g, dtype=dtype)
    target = torch.rand(2, 3, 5, 4, generator=g, dtype=dtype)
    weights = torch.rand(samples, 2, 3, 5, 4, generator=g, dtype=dtype)
    wc = torch.rand(samples, 2, generator=g, dtype=dtype) + 0.1
    return pred, target, weights, wc


def literal_loss(pred, target, weights, wc, base, form, offset=0.1):
    """Eq. (13) per image with explicit loops, independent of the vectorised code."""
    per_image = []
    for n in range(pred.shape[0]):
        e = pred[n] - target[n]
        expectations = []
        for i in range(weights.shape[0]):
            w = weights[i, n] if base == 'l1' else weights[i, n] / (e.detach().abs() + offset)
            err = e.abs() if base == 'l1' else e ** 2
            expectations.append((w * err).mean())
        total_wc = sum(wc[i, n] for i in range(wc.shape[0]))
        if form == 'weighted_sum':
            per_image.append(sum(wc[i, n] * expectations[i] for i in range(wc.shape[0])) / total_wc)
        else:
            posterior = sum(wc[i, n] * torch.exp(-expectations[i]) for i in range(wc.shape[0])) / total_wc
            per_image.append(-torch.log(posterior))
    return sum(per_image) / len(per_image)


@pytest.mark.parametrize('form', ['weighted_sum', 'log_posterior'])
@pytest.mark.parametrize('base', ['l1', 'mse'])
def test_value_and_gradient_equal_the_literal_formula(base, form):
    pred, target, weights, wc = loss_inputs()
    pred_a, pred_b = pred.clone().requires_grad_(), pred.clone().requires_grad_()
    ours = TLWLoss(base=base, form=form)(pred_a, target, weights, wc)
    expected = literal_loss(pred_b, target, weights, wc, base, form)
    assert ours.item() == pytest.approx(expected.item(), rel=1e-12)
    ours.backward()
    expected.backward()
    assert torch.allclose(pred_a.grad, pred_b.grad, atol=1e-14)


def test_one_sample_with_weights_of_one_is_l1():
    pred, target, _, _ = loss_inputs(samples=1)
    loss = TLWLoss()(pred, target, torch.ones(1, *pred.shape, dtype=pred.dtype), torch.ones(1, 2, dtype=pred.dtype))
    assert loss.item() == pytest.approx((pred - target).abs().mean().item(), rel=1e-12)


def test_weighted_sum_does_not_follow_the_scale_of_wc():
    pred, target, weights, wc = loss_inputs()
    loss = TLWLoss()
    assert loss(pred, target, weights, wc).item() == pytest.approx(loss(pred, target, weights, 37 * wc).item())


@pytest.mark.parametrize('form', ['weighted_sum', 'log_posterior'])
def test_gradcheck_l1(form):
    pred, target, weights, wc = loss_inputs()
    pred.requires_grad_()
    assert torch.autograd.gradcheck(lambda p: TLWLoss(form=form)(p, target, weights, wc), (pred,))


def test_weights_and_wc_get_no_gradient():
    pred, target, weights, wc = loss_inputs()
    weights.requires_grad_()
    wc.requires_grad_()
    TLWLoss()(pred.requires_grad_(), target, weights, wc).backward()
    assert weights.grad is None and wc.grad is None


def test_bad_inputs_are_clear_errors():
    pred, target, weights, wc = loss_inputs()
    with pytest.raises(ValueError, match='TLWLoss needs the sampled weights.*model_type: TLWModel'):
        TLWLoss()(pred, target)
    with pytest.raises(ValueError, match=r'TLWLoss: expected weights \(T, \*\(2, 3, 5, 4\)\)'):
        TLWLoss()(pred, target, weights[0], wc)
    with pytest.raises(ValueError, match='wc must be > 0'):
        TLWLoss()(pred, target, weights, wc * 0)
    with pytest.raises(ValueError, match="TLWLoss: option 'form'"):
        TLWLoss(form='mean')
    with pytest.raises(ValueError, match="TLWLoss: option 'base'"):
        TLWLoss(base='charbonnier')
    with pytest.raises(ValueError, match="'mse_offset' must be > 0"):
        TLWLoss(base='mse', mse_offset=0)


def test_log_posterior_is_stable_for_large_errors():
    pred, target, weights, wc = loss_inputs()
    loss = TLWLoss(form='log_posterior')(pred * 1e4, target, weights, wc)
    assert math.isfinite(loss.item()) and loss.item() > 100


@pytest.mark.parametrize('size, levels', [(48, 3), (100, 4)])
def test_ms_ssim_judge_on_small_patches_renormalises_the_weights_of_the_levels_that_fit(size, levels):
    """Fewer levels than five: Wang's first weights, rescaled so that they sum to the five weights' total
    (the pyramid itself is checked against pytorch-msssim in tests/losses/test_ssim_losses.py)."""
    torch.manual_seed(1)
    x = torch.rand(2, 3, size, size, dtype=torch.float64)
    y = (0.6 * x + 0.4 * torch.rand_like(x)).clamp(0, 1)
    wang = [0.0448, 0.2856, 0.3001, 0.2363, 0.1333]
    weights = tuple(w * sum(wang) / sum(wang[:levels]) for w in wang[:levels])
    expected = 1 - ms_ssim_pyramid(x, y, weights=weights).mean(dim=1)
    assert torch.allclose(build_judge({'type': 'ms_ssim'})(x, y), expected, rtol=1e-12)
    unnormalised = 1 - ms_ssim_pyramid(x, y, weights=tuple(wang[:levels])).mean(dim=1)
    assert ((expected - unnormalised).abs() > 1e-3).all()  # what the rescaling changes here


def test_ssim_and_l1_judges_by_an_independent_library_and_by_hand():
    """ssim: 1 - SSIM per image (11-tap Gaussian window, sigma 1.5), as piq; l1: mean |img - ref|."""
    import piq
    torch.manual_seed(2)
    x = torch.rand(3, 3, 32, 32, dtype=torch.float64)
    y = (0.7 * x + 0.3 * torch.rand_like(x)).clamp(0, 1)
    expected = 1 - piq.ssim(x, y, data_range=1.0, kernel_size=11, kernel_sigma=1.5, reduction='none')
    assert torch.allclose(build_judge({'type': 'ssim'})(x, y), expected, rtol=1e-10)
    assert torch.allclose(build_judge({'type': 'l1'})(x, y), (x - y).abs().flatten(1).mean(dim=1), rtol=1e-12)


def test_wc_clamps_a_judges_negative_distance_to_zero():
    """D >= 0 in eq. (4): a distance that rounds below 0 (1 - SSIM of near-identical images) counts as 0,
    so WC stays positive. A signed judge shows the clamp."""
    signed = lambda img, ref: (img - ref).mean(dim=(1, 2, 3))  # noqa: E731
    gt = torch.zeros(1, 1, 2, 2)
    sr = torch.full((1, 1, 2, 2), -0.5)
    w = torch.zeros(1, 1, 2, 2)  # x_w = sr: D = -0.5, counted as 0; x_{1-w} = gt: D = 0
    assert weight_criterion(signed, w, sr, gt).item() == pytest.approx(1.0)
