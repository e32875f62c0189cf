"""Bayer mosaic + Foi noise + bilinear demosaic, and JPEG, by hand and by their statistics."""
import cv2
import numpy as np
import pytest
import torch
from basicsr.archs import build_network
from torch import nn

from losses_plugin.data.degradations import (bayer_mask, bayer_noise_demosaic, bilinear_demosaic,
                                             build_degradations, jpeg)

RNG = np.random.default_rng(0)


def test_rggb_mask_positions_in_bgr_order():
    mask = bayer_mask((4, 4, 3))
    assert mask[0, 0].tolist() == [0, 0, 1]  # R (BGR index 2) at (0, 0)
    assert mask[0, 1].tolist() == [0, 1, 0] and mask[1, 0].tolist() == [0, 1, 0]
    assert mask[1, 1].tolist() == [1, 0, 0]  # B
    assert mask.sum(axis=2).tolist() == np.ones((4, 4)).tolist()  # one sample per pixel


def test_noise_free_demosaic_keeps_samples_and_interpolates_bilinearly():
    img = RNG.random((6, 8, 3)).astype(np.float32)
    out = bayer_noise_demosaic(img, RNG, noise_a=0, noise_b=0)
    mask = bayer_mask(img.shape).astype(bool)
    assert np.allclose(out[mask], img[mask], atol=1e-6)
    # green at the red pixel (2, 2): mean of its four green neighbours
    assert out[2, 2, 1] == pytest.approx(np.mean([img[1, 2, 1], img[3, 2, 1], img[2, 1, 1], img[2, 3, 1]]), abs=1e-6)
    # blue at the red pixel (2, 2): mean of the four diagonal blue samples
    assert out[2, 2, 0] == pytest.approx(np.mean([img[1, 1, 0], img[1, 3, 0], img[3, 1, 0], img[3, 3, 0]]), abs=1e-6)
    constant = np.full((5, 7, 3), 0.4, np.float32)
    assert np.allclose(bilinear_demosaic(constant * bayer_mask(constant.shape)), constant, atol=1e-6)


@pytest.mark.parametrize('pattern', ['rggb', 'bggr', 'grbg', 'gbrg'])
def test_every_pattern_s_demosaic_is_exact_on_a_linear_ramp_away_from_the_border(pattern):
    """Bilinear interpolation of samples of a plane gives the plane back, whatever the pattern."""
    y, x = np.mgrid[0:10, 0:12].astype(np.float32)
    ramp = np.stack([0.01 * x + 0.02 * y, 0.03 * x - 0.01 * y + 0.3, 0.5 - 0.02 * x + 0.01 * y], axis=2)
    out = bayer_noise_demosaic(ramp, RNG, pattern=pattern, noise_a=0, noise_b=0, clip=False)
    assert np.allclose(out[1:-1, 1:-1], ramp[1:-1, 1:-1], atol=1e-6)


def test_foi_noise_variance_and_clipping():
    level = 0.5
    img = np.full((200, 200, 3), level, np.float32)
    a, b = 0.005, 0.0001
    out = bayer_noise_demosaic(img, np.random.default_rng(1), noise_a=a, noise_b=b, clip=False)
    samples = out[bayer_mask(img.shape).astype(bool)]
    assert samples.std() == pytest.approx(np.sqrt(a * level + b), rel=0.03)
    dark = bayer_noise_demosaic(np.zeros((50, 50, 3), np.float32), np.random.default_rng(2))
    assert dark.min() >= 0 and dark.max() <= 1


def test_jpeg_matches_opencv_and_degrades_with_lower_quality():
    img = (RNG.random((32, 48, 3)) * 255).round()
    img = cv2.GaussianBlur(img.astype(np.uint8), (5, 5), 2).astype(np.float32) / 255
    q25 = jpeg(img, RNG, quality=25)
    reference = cv2.imdecode(cv2.imencode('.jpg', (img * 255).round().astype(np.uint8),
                                          [cv2.IMWRITE_JPEG_QUALITY, 25])[1], cv2.IMREAD_COLOR) / 255.
    assert np.allclose(q25, reference, atol=1e-6)
    assert np.abs(jpeg(img, RNG, quality=90) - img).mean() < np.abs(q25 - img).mean()
    grey = img[..., :1]
    assert jpeg(grey, RNG, quality=25).shape == grey.shape


def block_phase(degraded, img):
    """Column phase (mod 8) where the error jumps most: where JPEG's 8x8 block boundaries lie."""
    jumps = np.abs(np.diff(degraded - img, axis=1)).mean(axis=(0, 2))  # jumps[c-1]: between columns c-1, c
    return int(np.argmax([jumps[p - 1::8].mean() if p else jumps[7::8].mean() for p in range(8)]))


def test_jpeg_grid_shift_moves_the_block_boundaries_off_the_patch_grid():
    """Zhao et al. section 4.3: training patches whose JPEG blocks are not aligned with the patch."""
    y, x = np.mgrid[0:64, 0:96].astype(np.float32)
    img = np.stack([0.5 + 0.4 * np.sin(x / 5 + c) * np.cos(y / 7) for c in range(3)], axis=-1)
    assert block_phase(jpeg(img, RNG, quality=10), img) == 0
    phases = set()
    for seed in range(6):
        shifted = jpeg(img, np.random.default_rng(seed), quality=10, grid_shift=True)
        assert shifted.shape == img.shape
        phases.add(block_phase(shifted, img))
    assert 0 not in phases and len(phases) > 1
    assert jpeg(img[..., :1], RNG, quality=25, grid_shift=True).shape == (64, 96, 1)


@pytest.mark.parametrize('specs, message', [
    ([{'type': 'bayer_noise_demosaic', 'pattern': 'rgbg'}], 'pattern: expected one of rggb'),
    ([{'type': 'bayer_noise_demosaic', 'noise_a': -1}], 'noise_a: expected a number >= 0'),
    ([{'type': 'jpeg', 'quality': 101}], r'quality: expected an integer in \[0, 100\]'),
    ([{'type': 'jpeg', 'grid_shift': 'yes'}], 'grid_shift: expected true or false'),
])
def test_invalid_options(specs, message):
    with pytest.raises(ValueError, match=message):
        build_degradations(specs)


def test_zhao_demosaick_net_layers():
    net = build_network({'type': 'ZhaoDemosaickNet'})
    convs = [m for m in net.modules() if isinstance(m, nn.Conv2d)]
    assert [(c.in_channels, c.out_channels, c.kernel_size) for c in convs] == [(3, 64, (9, 9)), (64, 64, (5, 5)),
                                                                              (64, 3, (5, 5))]
    assert sum(isinstance(m, nn.PReLU) for m in net.modules()) == 2
    assert net(torch.rand(2, 3, 31, 31)).shape == (2, 3, 31, 31)


# ------------------------------------------------------------------ Bayer layout, read from the name
@pytest.mark.parametrize('pattern', ['rggb', 'bggr', 'grbg', 'gbrg'])
def test_bayer_colour_at_each_of_the_four_positions_is_the_patterns_name_in_raster_order(pattern):
    """A pattern's name lists the 2x2 tile row by row: 'grbg' is G R / B G. The mask (BGR order, as cv2
    images are) holds that colour at each of the four positions of every tile, and nothing else."""
    bgr = {'b': 0, 'g': 1, 'r': 2}
    mask = bayer_mask((6, 8, 3), pattern)
    for position, colour in enumerate(pattern):
        dy, dx = divmod(position, 2)
        expected = np.zeros(3)
        expected[bgr[colour]] = 1
        assert (mask[dy::2, dx::2] == expected).all(), (pattern, dy, dx, colour)


@pytest.mark.parametrize('pattern', ['rggb', 'bggr', 'grbg', 'gbrg'])
def test_noise_free_mosaic_keeps_the_named_colour_at_each_position_and_interpolates_the_others(pattern):
    """Through the whole degradation: at (dy, dx) of each tile only the colour the name gives there is the
    ground truth's own sample; the two other colours are interpolated from neighbours (so they differ)."""
    bgr = {'b': 0, 'g': 1, 'r': 2}
    img = np.random.default_rng(3).random((8, 10, 3)).astype(np.float32)
    out = bayer_noise_demosaic(img, np.random.default_rng(0), pattern=pattern, noise_a=0, noise_b=0)
    for position, colour in enumerate(pattern):
        dy, dx = divmod(position, 2)
        for channel in range(3):
            kept = np.abs(out[dy::2, dx::2, channel] - img[dy::2, dx::2, channel]) < 1e-6
            assert kept.all() if channel == bgr[colour] else not kept.any(), (pattern, dy, dx, channel)


# ------------------------------------------------------------------ Foi noise, measured on flat patches
def clipped_normal_moments(mean, std):
    """Mean and std of clip(N(mean, std^2), 0, 1), by numerical integration in float64 (independent of
    the code under test): the interior density plus the point masses that clipping puts at 0 and 1."""
    from scipy.stats import norm
    y = np.linspace(0, 1, 200001)
    density = norm.pdf(y, mean, std)
    below, above = norm.cdf(0, mean, std), norm.sf(1, mean, std)
    first = np.trapezoid(y * density, y) + above
    second = np.trapezoid(y * y * density, y) + above
    return first, np.sqrt(second - first ** 2)


@pytest.mark.parametrize('level', [0.0, 0.02, 0.2, 0.5, 0.9, 1.0])
def test_foi_noise_std_on_flat_patches_is_sqrt_of_a_y_plus_b_then_clipped(level):
    """Zhao et al. 4.1: Foi's Poisson-Gaussian model, a = 0.005, b = 0.0001, clipped to [0, 1]. On a flat
    grey patch the recorded samples have the mean and std of clip(N(y, a*y + b)): at mid grey that is
    sqrt(a*y + b); near 0 and 1 clipping shrinks it (and moves the mean). b alone at y = 0."""
    a, b = 0.005, 0.0001
    img = np.full((128, 128, 3), level, np.float32)
    out = bayer_noise_demosaic(img, np.random.default_rng(int(level * 100)))
    samples = out[bayer_mask(img.shape).astype(bool)].astype(np.float64)  # recorded samples pass unchanged
    mean, std = clipped_normal_moments(level, np.sqrt(a * level + b))
    assert samples.std() == pytest.approx(std, rel=0.03)
    assert samples.mean() == pytest.approx(mean, abs=3 * std / np.sqrt(samples.size) + 1e-7)
    unclipped = bayer_noise_demosaic(img, np.random.default_rng(7), clip=False)
    assert unclipped[bayer_mask(img.shape).astype(bool)].std() == pytest.approx(np.sqrt(a * level + b), rel=0.03)


def test_foi_noise_level_follows_each_samples_own_colour():
    """Signal-dependent noise: a patch with B, G, R = 0.1, 0.5, 0.9 has each colour's samples at the noise
    level of that colour's value (BGR order, as the dataset hands cv2 images)."""
    a, b = 0.005, 0.0001
    img = np.empty((128, 128, 3), np.float32)
    img[..., 0], img[..., 1], img[..., 2] = 0.1, 0.5, 0.9
    out = bayer_noise_demosaic(img, np.random.default_rng(11), clip=False)
    mask = bayer_mask(img.shape).astype(bool)
    for channel, level in enumerate((0.1, 0.5, 0.9)):
        samples = out[..., channel][mask[..., channel]]
        assert samples.std() == pytest.approx(np.sqrt(a * level + b), rel=0.04), channel
        assert samples.mean() == pytest.approx(level, abs=0.003), channel


def test_gaussian_noise_is_sigma_over_255_times_the_generators_normals_unclipped_by_default():
    """DnCNN's convention, on a fixed draw: noisy = img + (sigma / 255) * N(0, 1), and no clipping
    unless asked (a black image gets negative values)."""
    img = np.zeros((16, 16, 3), np.float32)
    noisy = build_degradations([{'type': 'gaussian_noise', 'sigma': 25}])[0](img, np.random.default_rng(4))
    normals = np.random.default_rng(4).standard_normal(img.shape)
    assert np.allclose(noisy, normals * 25 / 255, rtol=1e-6, atol=1e-7)
    assert noisy.min() < 0
    grey = np.full((16, 16, 3), 0.5, np.float32)  # sigma 100: about a third of the values leave [0, 1] each way
    unclipped = build_degradations([{'type': 'gaussian_noise', 'sigma': 100}])[0](grey, np.random.default_rng(4))
    clipped = build_degradations([{'type': 'gaussian_noise', 'sigma': 100, 'clip': True}])[0](grey,
                                                                                             np.random.default_rng(4))
    assert unclipped.min() < 0 and unclipped.max() > 1
    assert np.array_equal(clipped, np.clip(unclipped, 0, 1)) and clipped.min() == 0 and clipped.max() == 1


@pytest.mark.parametrize('spec', [{'type': 'gaussian_noise', 'sigma': 25}, {'type': 'gaussian_noise', 'sigma': 25,
                                                                           'clip': True},
                                  {'type': 'bayer_noise_demosaic'}, {'type': 'jpeg', 'quality': 30},
                                  {'type': 'jpeg', 'quality': 30, 'grid_shift': True}],
                         ids=['gaussian', 'gaussian-clip', 'bayer', 'jpeg', 'jpeg-shift'])
def test_every_degradation_returns_a_float32_image_of_the_input_size(spec):
    """The module's contract (float32 HWC in [0, 1] in and out): no float64 intermediate leaks out."""
    img = np.random.default_rng(1).random((24, 20, 3), dtype=np.float32)
    out = build_degradations([spec])[0](img, np.random.default_rng(2))
    assert out.dtype == np.float32 and out.shape == img.shape


def test_jpeg_quality_range_draws_both_ends():
    """quality [low, high] draws an integer quality per image, both ends included."""
    img = np.random.default_rng(5).random((16, 16, 3)).astype(np.float32)
    low, high = jpeg(img, RNG, quality=20), jpeg(img, RNG, quality=21)
    assert not np.array_equal(low, high)
    rng = np.random.default_rng(6)
    drawn = [jpeg(img, rng, quality=[20, 21]) for _ in range(12)]
    assert all(np.array_equal(d, low) or np.array_equal(d, high) for d in drawn)
    assert any(np.array_equal(d, low) for d in drawn) and any(np.array_equal(d, high) for d in drawn)


def test_jpeg_rounds_to_the_nearest_8_bit_level_before_encoding():
    """Values between 8-bit levels go to the nearest one (k + 0.7 -> k + 1), not down: the result is
    OpenCV's JPEG of the rounded image."""
    levels = np.random.default_rng(8).integers(0, 200, (16, 16, 3))
    img = ((levels + 0.7) / 255).astype(np.float32)
    reference = cv2.imdecode(cv2.imencode('.jpg', (levels + 1).astype(np.uint8), [cv2.IMWRITE_JPEG_QUALITY, 90])[1],
                             cv2.IMREAD_COLOR) / 255.
    assert np.allclose(jpeg(img, RNG, quality=90), reference, atol=1e-6)


def opencv_jpeg(levels, quality):
    """OpenCV's JPEG of a uint8 image, as float in [0, 1]."""
    encoded = cv2.imencode('.jpg', levels.astype(np.uint8), [cv2.IMWRITE_JPEG_QUALITY, quality])[1]
    return cv2.imdecode(encoded, cv2.IMREAD_COLOR) / 255.


def test_jpeg_defaults_to_quality_25_and_clips_values_outside_0_1():
    """Zhao et al.'s q = 25 unless told otherwise; a noisy input past [0, 1] is clipped before encoding."""
    levels = np.random.default_rng(9).integers(0, 256, (16, 16, 3))
    img = (levels / 255).astype(np.float32)
    assert np.allclose(jpeg(img, RNG), opencv_jpeg(levels, 25), atol=1e-6)
    img[:4], img[4:8] = -0.2, 1.3
    levels[:4], levels[4:8] = 0, 255
    assert np.allclose(jpeg(img, RNG, quality=60), opencv_jpeg(levels, 60), atol=1e-6)


def test_jpeg_grid_shift_reflect_pads_by_1_to_7_pixels_each_way():
    """The output is the JPEG of the image reflect-padded by (dy, dx) above and left, cropped back;
    over 40 draws every shift 1..7 occurs in each direction and 0 never does."""
    levels = np.random.default_rng(10).integers(0, 256, (16, 16, 3))
    img = (levels / 255).astype(np.float32)
    candidates = {(dy, dx): opencv_jpeg(np.pad(levels, ((dy, 0), (dx, 0), (0, 0)), mode='reflect'), 50)[dy:, dx:]
                  for dy in range(8) for dx in range(8)}
    shifts = set()
    for seed in range(40):
        out = jpeg(img, np.random.default_rng(seed), quality=50, grid_shift=True)
        found = [shift for shift, expected in candidates.items() if np.allclose(out, expected, atol=1e-6)]
        assert len(found) == 1, seed
        shifts.add(found[0])
    assert {dy for dy, _ in shifts} == set(range(1, 8)) == {dx for _, dx in shifts}
