"""SSIM, MS-SSIM and the Mix loss of Zhao et al., by hand and against independent implementations
(piq and pytorch-msssim for SSIM, pytorch-msssim for the pyramid, kornia >= 0.9 for Mix)."""
import kornia
import numpy as np
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
    with pytest.raises(ValueError, match="MSSSIML1Loss: a 33x33 Gaussian window does not fit a 20x20 image with padding 'valid'"):
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


# ------------------------------------------------ boundary handling against a float64 NumPy reference
def reference_gaussian_filter(img, sigma, radius, padding):
    """Each (H, W) plane of ``img`` correlated with the 2-D window outer(g, g), g the normalised samples
    of exp(-k^2 / (2 sigma^2)), k = -radius..radius; NumPy padding: 'reflect' mirrors without repeating
    the edge (d c b | a b c d), 'zero' pads 0, 'valid' keeps only the windows that fit."""
    k = np.arange(-radius, radius + 1, dtype=np.float64)
    g = np.exp(-k ** 2 / (2 * sigma ** 2))
    window = np.outer(g, g) / g.sum() ** 2
    img = np.asarray(img, np.float64)
    pad = [(0, 0)] * (img.ndim - 2) + [(radius, radius)] * 2
    if padding == 'reflect':
        img = np.pad(img, pad, mode='reflect')
    elif padding == 'zero':
        img = np.pad(img, pad, mode='constant')
    patches = np.lib.stride_tricks.sliding_window_view(img, window.shape, axis=(-2, -1))
    return np.einsum('...ij,ij->...', patches, window)


def reference_l_cs(x, y, sigma, radius, padding, c1=0.01 ** 2, c2=0.03 ** 2):
    """SSIM's luminance and contrast-structure maps from the reference filter (eq. 4-5)."""
    f = lambda img: reference_gaussian_filter(img, sigma, radius, padding)  # noqa: E731
    mu_x, mu_y = f(x), f(y)
    var_x, var_y, cov = f(x * x) - mu_x ** 2, f(y * y) - mu_y ** 2, f(x * y) - mu_x * mu_y
    return (2 * mu_x * mu_y + c1) / (mu_x ** 2 + mu_y ** 2 + c1), (2 * cov + c2) / (var_x + var_y + c2)


@pytest.mark.parametrize('size', [(14, 11), (48, 45)], ids=['by matmul', 'by convolution'])
@pytest.mark.parametrize('padding', ['valid', 'reflect', 'zero'])
def test_gaussian_filter_boundary_equals_the_numpy_reference(padding, size):
    torch.manual_seed(4)
    x = torch.rand(2, 3, *size, dtype=torch.float64)
    ours = gaussian_filter(x, (0.8, 1.7), 2, padding)
    for k, sigma in enumerate((0.8, 1.7)):
        expected = reference_gaussian_filter(x.numpy(), sigma, 2, padding)
        assert ours[:, :, k].shape == expected.shape
        assert np.allclose(ours[:, :, k].numpy(), expected, rtol=0, atol=1e-13)


def test_the_three_paddings_differ_on_the_border_and_agree_inside():
    """What the previous test can tell apart: every border pixel within the radius differs between
    the paddings, interior pixels do not."""
    torch.manual_seed(5)
    x = torch.rand(1, 1, 12, 12, dtype=torch.float64)
    reflect, zero = gaussian_filter(x, (1.5,), 3, 'reflect')[0, 0, 0], gaussian_filter(x, (1.5,), 3, 'zero')[0, 0, 0]
    valid = gaussian_filter(x, (1.5,), 3, 'valid')[0, 0, 0]
    replicate = torch.from_numpy(reference_gaussian_filter(np.pad(x.numpy(), [(0, 0)] * 2 + [(3, 3)] * 2, 'edge'),
                                                           1.5, 3, 'valid'))[0, 0]
    border = torch.ones(12, 12, dtype=torch.bool)
    border[3:-3, 3:-3] = False
    for other in (zero, replicate):
        assert ((reflect - other).abs() > 1e-6)[border].all()
        assert torch.allclose(reflect[3:-3, 3:-3], other[3:-3, 3:-3], atol=1e-15)
    assert torch.allclose(reflect[3:-3, 3:-3], valid, atol=1e-15)


@pytest.mark.parametrize('padding', ['valid', 'reflect', 'zero'])
def test_ssim_map_equals_the_numpy_reference_for_each_padding(padding):
    x, y = pair(shape=(2, 3, 16, 13), seed=6, noise=0.2)
    ours = SSIMLoss(sigma=1.5, padding=padding, reduction='none')(x, y)
    l, cs = reference_l_cs(x.numpy(), y.numpy(), 1.5, 5, padding)
    assert ours.shape == l.shape
    assert np.allclose(ours.numpy(), 1 - l * cs, rtol=0, atol=1e-12)


@pytest.mark.parametrize('padding', ['valid', 'reflect', 'zero'])
def test_ms_ssim_sigmas_and_mix_maps_equal_the_numpy_reference(padding):
    """Eq. (12) in mode 'sigmas': l of the largest sigma times every sigma's cs, all on one
    2*max(sigma) window; eq. (14): alpha*(1 - MS-SSIM) + (1 - alpha)*G_sigmaM*|e|, same boundary."""
    sigmas = (0.5, 1.0, 2.0)
    x, y = pair(shape=(1, 2, 18, 19), seed=7, noise=0.2)
    terms = [reference_l_cs(x.numpy(), y.numpy(), s, 4, padding) for s in sigmas]
    ms_ssim = terms[-1][0] * np.prod([cs for _, cs in terms], axis=0)
    ours = MSSSIMLoss(sigmas=sigmas, padding=padding, reduction='none')(x, y)
    assert np.allclose(ours.numpy(), 1 - ms_ssim, rtol=0, atol=1e-12)
    l1 = reference_gaussian_filter((x - y).abs().numpy(), 2.0, 4, padding)
    mix = MSSSIML1Loss(alpha=0.84, sigmas=sigmas, padding=padding, reduction='none')(x, y)
    assert np.allclose(mix.numpy(), 0.84 * (1 - ms_ssim) + 0.16 * l1, rtol=0, atol=1e-12)


# ------------------------------------------------ the pyramid's relu on negative terms
def smooth_pattern(size=176):
    grid = torch.linspace(-1, 1, size, dtype=torch.float64)
    yy, xx = torch.meshgrid(grid, grid, indexing='ij')
    return lambda f: torch.sin(f * xx) * torch.cos(f * yy)


def finely_anticorrelated_pair(size=176):
    """A smooth pattern shared by both images (positive cs at the coarse levels) and fine noise with
    opposite signs: negative cs at the two finest levels only."""
    torch.manual_seed(0)
    fine, shared = 0.1 * torch.randn(1, 1, size, size, dtype=torch.float64), 0.3 * smooth_pattern(size)(3)
    return (0.5 + shared + fine).clamp(0, 1), (0.5 + shared - fine).clamp(0, 1)


def coarsely_anticorrelated_pair(size=176):
    """Blocky noise shared by both images (block sides 1 to 8 px: positive cs at levels 0-3) on top of a
    smooth pattern with opposite signs, which only the coarsest level (one 11x11 window) sees as its
    structure: negative SSIM there, and there alone."""
    torch.manual_seed(0)
    shared = sum(torch.nn.functional.interpolate(0.1 * torch.randn(1, 1, size // b, size // b, dtype=torch.float64),
                                                 scale_factor=b, mode='nearest') for b in (1, 2, 4, 8))
    coarse = 0.2 * smooth_pattern(size)(2)
    return (0.5 + shared + coarse).clamp(0, 1), (0.5 + shared - coarse).clamp(0, 1)


def pyramid_terms(x, y):
    """Mean cs and mean SSIM of each of the five levels, from the NumPy reference."""
    pooled = [(x, y)]
    for _ in range(4):
        pooled.append(tuple(torch.nn.functional.avg_pool2d(t, 2) for t in pooled[-1]))
    terms = [reference_l_cs(a.numpy(), b.numpy(), 1.5, 5, 'valid') for a, b in pooled]
    return [cs.mean() for _, cs in terms], [(l * cs).mean() for l, cs in terms]


@pytest.mark.parametrize('make_pair', [coarsely_anticorrelated_pair, finely_anticorrelated_pair])
def test_pyramid_clamps_a_negative_term_to_zero_as_wang_et_al(make_pair):
    """A negative term cannot be raised to a fractional power: Wang et al.'s MS-SSIM (and pytorch-msssim)
    clamp each level's cs and the last level's SSIM at 0, so MS-SSIM is 0 and the loss exactly 1, not
    NaN and not a positive value; whether the negative term is the last level's SSIM or a fine cs."""
    x, y = make_pair()
    cs, ssim = pyramid_terms(x, y)
    if make_pair is coarsely_anticorrelated_pair:  # the premise of each pair
        assert min(cs[:4]) > 0.5 and ssim[4] < -0.2
    else:
        assert max(cs[:2]) < -0.2 and min(cs[2:4]) > 0.5 and ssim[4] > 0.5
    assert pytorch_msssim.ms_ssim(x, y, data_range=1.0).item() == 0
    assert MSSSIMLoss(mode='pyramid')(x, y).item() == 1.0
    assert MSSSIMLoss(mode='pyramid')(x, x).item() == pytest.approx(0, abs=1e-12)


# ------------------------------------------------ options that change the numbers
def test_data_range_scales_c1_c2_and_the_l1_term():
    """C1 = (0.01 R)^2, C2 = (0.03 R)^2 and Mix's L1 on the [0, 1] scale: images on 0-255 with
    data_range 255 give the [0, 1] losses."""
    x, y = pair(shape=(1, 3, 161, 161), seed=8, noise=0.2)  # the pyramid's smallest size
    pyramid = lambda **o: MSSSIMLoss(mode='pyramid', **o)  # noqa: E731
    assert pyramid(data_range=255.)(255 * x, 255 * y).item() == pytest.approx(pyramid()(x, y).item(), rel=1e-9)
    x, y = x[..., :40, :40], y[..., :40, :40]
    for make in (SSIMLoss, MSSSIMLoss, MSSSIML1Loss):
        assert make(data_range=255.)(255 * x, 255 * y).item() == pytest.approx(make()(x, y).item(), rel=1e-9)
    ours = SSIMLoss(data_range=255.)(255 * x, 255 * y)
    assert ours.item() == pytest.approx(1 - piq.ssim(255 * x, 255 * y, data_range=255.).item(), rel=1e-9)


def test_window_size_option_sets_the_window():
    x, y = pair(shape=(1, 3, 32, 32), seed=9)
    theirs = 1 - piq.ssim(x, y, data_range=1.0, kernel_size=7, kernel_sigma=1.5)
    assert SSIMLoss(window_size=7)(x, y).item() == pytest.approx(theirs.item(), rel=1e-10)


def test_sigmas_in_any_order_take_l_from_the_largest():
    x, y = pair(shape=(1, 2, 40, 40), seed=10)
    assert MSSSIMLoss(sigmas=(8.0, 0.5, 4.0, 1.0, 2.0))(x, y).item() == pytest.approx(MSSSIMLoss()(x, y).item(),
                                                                                       rel=1e-12)
    assert MSSSIML1Loss(sigmas=(2.0, 8.0, 1.0, 4.0, 0.5))(x, y).item() == pytest.approx(
        MSSSIML1Loss()(x, y).item(), rel=1e-12)


def test_pyramid_on_odd_sizes_pads_before_pooling_as_pytorch_msssim():
    """Odd sides are padded by one before each 2x2 average pooling (pytorch-msssim's rule)."""
    x, y = pair(shape=(1, 3, 183, 171), seed=11)
    window = gaussian_kernel_1d(1.5, 5, torch.float64).view(1, 1, 1, 11).repeat(3, 1, 1, 1)
    theirs = 1 - pytorch_msssim.ms_ssim(x, y, data_range=1.0, win=window)
    assert MSSSIMLoss(mode='pyramid')(x, y).item() == pytest.approx(theirs.item(), rel=1e-10)


def test_valid_window_that_just_fits_gives_one_value():
    x, y = pair(shape=(1, 1, 11, 11), seed=12)
    assert SSIMLoss(reduction='none')(x, y).shape == (1, 1, 1, 1)
    theirs = 1 - piq.ssim(x, y, data_range=1.0, kernel_size=11, kernel_sigma=1.5)
    assert SSIMLoss()(x, y).item() == pytest.approx(theirs.item(), rel=1e-10)
