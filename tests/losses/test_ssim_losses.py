"""SSIM, MS-SSIM and the Mix loss of Zhao et al., by hand and against independent implementations
(piq and pytorch-msssim for SSIM, pytorch-msssim for the pyramid, kornia >= 0.9 for Mix)."""
import kornia
import piq
import pytest
import pytorch_msssim
import torch

from losses_plugin.losses.gaussian_filter import gaussian_filter, gaussian_kernel_1d
from losses_plugin.losses.ms_ssim_l1_loss import MSSSIML1Loss
from losses_plugin.losses.ms_ssim_loss import MSSSIMLoss
from losses_plugin.losses.ssim_loss import SSIMLoss


def relative_difference(a, b):
    return ((a - b).norm() / b.norm()).item()


def pair(shape=(2, 3, 48, 48), seed=0, noise=0.1):
    torch.manual_seed(seed)
    x = torch.rand(shape, dtype=torch.float64)
    return x, (x + noise * torch.randn_like(x)).clamp(0, 1)


@pytest.mark.parametrize('size', [20, 90], ids=['by matmul', 'by convolution'])
def test_separable_filter_equals_the_2d_window(size):
    x = torch.rand(1, 2, size, size + 3, dtype=torch.float64)
    for k, sigma in enumerate((0.5, 2.0)):
        g = gaussian_kernel_1d(sigma, 4, torch.float64)
        window = torch.outer(g, g).expand(2, 1, 9, 9)
        expected = torch.nn.functional.conv2d(x, window, groups=2)
        assert torch.allclose(gaussian_filter(x, (0.5, 2.0), 4)[:, :, k], expected, atol=1e-14)
    assert gaussian_kernel_1d(1.5, 5).sum().item() == pytest.approx(1.0)


def test_constant_images_give_ssim_one():
    x = torch.full((1, 3, 40, 40), 0.3, dtype=torch.float64)
    for loss in (SSIMLoss(), MSSSIMLoss(), MSSSIMLoss(padding='reflect'), MSSSIML1Loss()):
        assert loss(x, x).item() == pytest.approx(0.0, abs=1e-12)


def test_uniform_bias_changes_ssim_little_and_l1_a_lot():
    """Section 5.2 of the paper: SSIM is insensitive to a uniform bias (in bright regions most)."""
    x, _ = pair(noise=0)
    biased = x * 0.8 + 0.2  # bright, as the paper's example
    ssim_loss = SSIMLoss()(biased + 0.05, biased).item()
    l1_loss = (0.05 * torch.ones(1)).item()
    assert ssim_loss < l1_loss / 10


def test_ssim_matches_piq_and_pytorch_msssim_values_and_gradients():
    x, y = pair()
    x.requires_grad_()
    ours = SSIMLoss()(x, y)
    theirs = 1 - piq.ssim(x, y, data_range=1.0, kernel_size=11, kernel_sigma=1.5)
    assert ours.item() == pytest.approx(theirs.item(), rel=1e-10)
    g_ours, = torch.autograd.grad(ours, x)
    g_theirs, = torch.autograd.grad(theirs, x)
    assert torch.allclose(g_ours, g_theirs, rtol=1e-8, atol=1e-14)
    other = 1 - pytorch_msssim.ssim(x.detach().float(), y.float(), data_range=1.0, win_size=11, win_sigma=1.5)
    assert ours.item() == pytest.approx(other.item(), rel=1e-5)


@pytest.mark.parametrize('sigma', [5.0, 9.0])
def test_wide_sigmas_of_the_paper(sigma):
    x, y = pair(shape=(1, 1, 80, 80))
    loss = SSIMLoss(sigma=sigma)
    assert loss.radius == int(3.5 * sigma + 0.5)
    theirs = 1 - piq.ssim(x, y, data_range=1.0, kernel_size=2 * loss.radius + 1, kernel_sigma=sigma)
    assert loss(x, y).item() == pytest.approx(theirs.item(), rel=1e-10)


def test_mix_matches_kornia_values_and_gradients():
    x, y = pair(shape=(2, 3, 40, 40))
    x32 = x.float().requires_grad_()
    ours = MSSSIML1Loss(padding='zero')(x32, y.float())
    theirs = kornia.losses.MS_SSIMLoss(alpha=0.84, compensation=1.0)(x32, y.float())
    assert ours.item() == pytest.approx(theirs.item(), rel=1e-5)
    g_ours, = torch.autograd.grad(ours, x32)
    g_theirs, = torch.autograd.grad(theirs, x32)
    assert relative_difference(g_ours, g_theirs) < 1e-5


def test_mix_alpha_one_is_ms_ssim_and_alpha_zero_is_filtered_l1():
    x, y = pair(shape=(1, 3, 40, 40))
    assert MSSSIML1Loss(alpha=1.0)(x, y).item() == pytest.approx(MSSSIMLoss()(x, y).item(), rel=1e-12)
    filtered = gaussian_filter((x - y).abs(), (8.0,), 16)[:, :, 0].mean()
    assert MSSSIML1Loss(alpha=0.0)(x, y).item() == pytest.approx(filtered.item(), rel=1e-12)


def test_pyramid_matches_pytorch_msssim_values_and_gradients():
    x, y = pair(shape=(1, 3, 176, 176))
    x.requires_grad_()
    ours = MSSSIMLoss(mode='pyramid')(x, y)
    # the same 11 Gaussian samples in float64 (pytorch-msssim builds them in float32)
    window = gaussian_kernel_1d(1.5, 5, torch.float64).view(1, 1, 1, 11).repeat(3, 1, 1, 1)
    theirs = 1 - pytorch_msssim.ms_ssim(x, y, data_range=1.0, win=window)
    assert ours.item() == pytest.approx(theirs.item(), rel=1e-10)
    assert ours.item() == pytest.approx(1 - pytorch_msssim.ms_ssim(x, y, data_range=1.0).item(), rel=1e-5)
    g_ours, = torch.autograd.grad(ours, x)
    g_theirs, = torch.autograd.grad(theirs, x)
    assert relative_difference(g_ours, g_theirs) < 1e-5


def test_gradcheck_float64_every_padding():
    x, y = pair(shape=(1, 2, 12, 12))
    x.requires_grad_()
    assert torch.autograd.gradcheck(SSIMLoss(sigma=1.0), (x, y))
    for padding in ('reflect', 'zero'):
        assert torch.autograd.gradcheck(MSSSIML1Loss(sigmas=(0.5, 1.0, 2.0), padding=padding), (x, y))
    assert torch.autograd.gradcheck(MSSSIMLoss(sigmas=(0.5, 1.5)), (x, y))


def test_one_and_three_channels_video_and_half():
    for channels in (1, 3):
        x, y = pair(shape=(2, channels, 40, 40))
        assert 0 < MSSSIML1Loss()(x, y).item() < 1
    video, target = pair(shape=(2, 3, 3, 40, 40))
    assert torch.allclose(SSIMLoss()(video, target), SSIMLoss()(video.view(6, 3, 40, 40), target.view(6, 3, 40, 40)))
    assert MSSSIML1Loss()(video.half(), target.half()).dtype == torch.float32


def test_window_must_fit():
    x, y = pair(shape=(1, 3, 20, 20))
    with pytest.raises(ValueError, match="a 33x33 Gaussian window does not fit a 20x20 image with padding 'valid'"):
        MSSSIML1Loss()(x, y)
    assert MSSSIML1Loss(padding='zero')(x, y).item() > 0
    with pytest.raises(ValueError, match="mode 'pyramid' with 5 levels needs images of at least 161x161"):
        MSSSIMLoss(mode='pyramid')(x, y)


@pytest.mark.parametrize('build, message', [
    (lambda: SSIMLoss(sigma=0), "SSIMLoss: option 'sigma' must be > 0"),
    (lambda: SSIMLoss(window_size=10), "option 'window_size' must be an odd positive integer"),
    (lambda: SSIMLoss(padding='same'), "option 'padding' must be one of 'valid', 'reflect', 'zero'"),
    (lambda: MSSSIMLoss(mode='dyadic'), "option 'mode' must be one of 'sigmas', 'pyramid'"),
    (lambda: MSSSIMLoss(sigmas=[]), "option 'sigmas' must be a non-empty list"),
    (lambda: MSSSIML1Loss(alpha=1.5), "option 'alpha' must be in"),
])
def test_invalid_options(build, message):
    with pytest.raises(ValueError, match=message):
        build()


def test_autocast_does_not_lower_the_precision_inside():
    x, y = pair(shape=(2, 3, 40, 40))
    x, y = x.float(), y.float()
    for loss in (SSIMLoss(), MSSSIML1Loss(), MSSSIMLoss(padding='reflect')):
        expected = loss(x, y)
        with torch.autocast('cpu', dtype=torch.bfloat16):
            under_amp = loss(x, y)
        assert under_amp.dtype == torch.float32 and torch.equal(under_amp, expected)


def test_basicsr_weight_needs_a_full_size_map():
    x, y = pair(shape=(1, 3, 24, 24))
    weight = torch.ones_like(x)
    assert torch.allclose(SSIMLoss(padding='reflect')(x, y, weight=weight), SSIMLoss(padding='reflect')(x, y))
    video, target = pair(shape=(1, 2, 3, 24, 24))
    assert torch.allclose(SSIMLoss(padding='zero')(video, target, weight=torch.ones_like(video)),
                          SSIMLoss(padding='zero')(video, target))
    with pytest.raises(ValueError, match=r"SSIMLoss: weight needs a loss map of the input size.*padding reflect"):
        SSIMLoss()(x, y, weight=weight)
