"""Table 1 metrics of Zhao et al. through BasicSR's metric call: perfect on identical images,
ordered by distortion, and MS-SSIM equal to an independent implementation (pytorch-msssim)."""
import numpy as np
import piq
import pytest
import pytorch_msssim
import torch
from basicsr.metrics import calculate_metric

HIGHER_IS_BETTER = ('calculate_ms_ssim', 'calculate_iw_ssim', 'calculate_fsim')


@pytest.fixture(scope='module')
def images(demo_data):
    import cv2
    gt = cv2.imread(str(demo_data / 'val' / 'HR' / 'chelsea.png'))[:192, :256]
    rng = np.random.default_rng(0)
    mild = np.clip(gt + rng.normal(0, 4, gt.shape), 0, 255).astype(np.uint8)
    strong = np.clip(gt + rng.normal(0, 20, gt.shape), 0, 255).astype(np.uint8)
    return gt, mild, strong


def metric(name, img, img2, **options):
    return calculate_metric({'img': img, 'img2': img2}, {'type': name, 'crop_border': 4, **options})


@pytest.mark.parametrize('name', HIGHER_IS_BETTER + ('calculate_gmsd', 'calculate_l1_1000', 'calculate_l2_1000'))
def test_identical_is_perfect_and_more_noise_scores_worse(name, images):
    gt, mild, strong = images
    perfect = 1.0 if name in HIGHER_IS_BETTER else 0.0
    assert metric(name, gt, gt) == pytest.approx(perfect, abs=1e-6)
    better, worse = metric(name, mild, gt), metric(name, strong, gt)
    assert (better > worse) if name in HIGHER_IS_BETTER else (better < worse)


def test_fsimc_and_y_channel(images):
    gt, mild, _ = images
    assert 0 < metric('calculate_fsim', mild, gt, chromatic=True) < 1
    assert 0 < metric('calculate_fsim', mild, gt, test_y_channel=True) < 1
    with pytest.raises(ValueError, match='chromatic'):
        metric('calculate_fsim', mild, gt, chromatic=True, test_y_channel=True)


def test_scaled_errors_by_hand():
    a = np.zeros((10, 10, 3), np.uint8)
    b = a.copy()
    b[...] = 51  # 0.2 on [0, 1]
    assert metric('calculate_l1_1000', b, a) == pytest.approx(200.0)
    assert metric('calculate_l2_1000', b, a) == pytest.approx(40.0)
    b[:, :5] = 102  # the 4-pixel crop keeps columns 4 (now 0.4) and 5 (still 0.2)
    assert metric('calculate_l1_1000', b, a) == pytest.approx(300.0)  # mean of 0.4 and 0.2
    assert metric('calculate_l2_1000', b, a) == pytest.approx(100.0)  # mean of 0.16 and 0.04, not 0.3^2


def test_float_images_past_255_are_scored_as_clipped():
    """A float network output a hair past the range is clipped to [0, 1] before piq (which would refuse it)."""
    a = np.full((40, 40, 3), 200.0)
    b = a.copy()
    b[10:20, 10:20] = 300.0  # scored as 255: 55/255 on 100 of 1024 cropped pixels
    assert metric('calculate_l1_1000', b, a) == pytest.approx(1000 * 55 / 255 * 100 / 1024)
    b[10:20, 10:20] = -100.0  # and below 0, as 0: 200/255
    assert metric('calculate_l1_1000', b, a) == pytest.approx(1000 * 200 / 255 * 100 / 1024)
    assert 0 < metric('calculate_gmsd', b, a) < 1


def test_ms_ssim_equals_pytorch_msssim(images):
    gt, mild, _ = images
    ours = calculate_metric({'img': mild, 'img2': gt}, {'type': 'calculate_ms_ssim', 'crop_border': 0})
    x = torch.from_numpy(mild[..., ::-1].copy()).permute(2, 0, 1)[None].double() / 255
    y = torch.from_numpy(gt[..., ::-1].copy()).permute(2, 0, 1)[None].double() / 255
    assert ours == pytest.approx(pytorch_msssim.ms_ssim(x, y, data_range=1.0).item(), rel=1e-4)


# ------------------------------------------------ channel order: BasicSR hands BGR, piq expects RGB
@pytest.fixture(scope='module')
def red_noise_pair(demo_data):
    """chelsea.png read as RGB by PIL (not cv2), 176x176; a copy with noise in the red channel only.
    Returned as BasicSR's validation hands images to metrics: uint8 BGR, converted by cv2."""
    import cv2
    from PIL import Image
    rgb = np.asarray(Image.open(demo_data / 'val' / 'HR' / 'chelsea.png').convert('RGB'))[:176, :176]
    noisy = rgb.astype(np.float64)
    noisy[..., 0] += np.random.default_rng(1).normal(0, 25, noisy.shape[:2])
    noisy = np.clip(noisy, 0, 255).round().astype(np.uint8)
    return rgb, noisy, cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR), cv2.cvtColor(noisy, cv2.COLOR_RGB2BGR)


PIQ_METRICS = {
    'calculate_gmsd': lambda x, y: piq.gmsd(x, y, data_range=1.0),
    'calculate_iw_ssim': lambda x, y: piq.information_weighted_ssim(x, y, data_range=1.0),
    'calculate_fsim': lambda x, y: piq.fsim(x, y, data_range=1.0, chromatic=False),
    'calculate_fsim_chromatic': lambda x, y: piq.fsim(x, y, data_range=1.0, chromatic=True),
}


@pytest.mark.parametrize('name', PIQ_METRICS)
def test_metrics_see_the_bgr_images_as_rgb(name, red_noise_pair):
    """piq's luminance (YIQ) weighs red 0.299 and blue 0.114: noise in red alone scores differently from
    the same noise read as blue. Our metric on BasicSR's BGR images equals piq on the RGB images."""
    rgb, noisy_rgb, bgr, noisy_bgr = red_noise_pair
    piq_metric = PIQ_METRICS[name]
    as_tensor = lambda img: torch.from_numpy(img.astype(np.float64) / 255).permute(2, 0, 1)[None]  # noqa: E731
    expected = piq_metric(as_tensor(noisy_rgb), as_tensor(rgb)).item()
    channels_swapped = piq_metric(as_tensor(noisy_bgr), as_tensor(bgr)).item()
    assert abs(expected - channels_swapped) > 0.01 * abs(expected)  # the premise: the order matters here
    options = {'chromatic': True} if name.endswith('chromatic') else {}
    ours = calculate_metric({'img': noisy_bgr, 'img2': bgr},
                            {'type': name.replace('_chromatic', ''), 'crop_border': 0, **options})
    assert ours == pytest.approx(expected, rel=1e-6)


@pytest.mark.parametrize('name, scale', [('calculate_l1_1000', 1000 / 255), ('calculate_rmse', 1.0)])
def test_y_channel_is_bt601_luma_of_the_bgr_image(name, scale):
    """test_y_channel: Y = 16 + 65.481 R + 128.553 G + 24.966 B (R, G, B in [0, 1]), BasicSR's Y; channel 2
    of a BGR image is red. A difference of 100 in red alone and in blue alone, by hand."""
    gt = np.zeros((8, 8, 3), np.uint8)
    for channel, coefficient in ((2, 65.481), (0, 24.966), (1, 128.553)):
        img = gt.copy()
        img[..., channel] = 100
        value = calculate_metric({'img': img, 'img2': gt}, {'type': name, 'crop_border': 0, 'test_y_channel': True})
        assert value == pytest.approx(coefficient * 100 / 255 * scale, rel=1e-6), channel
