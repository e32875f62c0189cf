"""Table 1 metrics of Zhao et al. through BasicSR's metric call: perfect on identical images,
ordered by distortion, and MS-SSIM equal to an independent implementation (pytorch-msssim)."""
import numpy as np
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


def test_ms_ssim_equals_pytorch_msssim(images):
    gt, mild, _ = images
    ours = calculate_metric({'img': mild, 'img2': gt}, {'type': 'calculate_ms_ssim', 'crop_border': 0})
    x = torch.from_numpy(mild[..., ::-1].copy()).permute(2, 0, 1)[None].double() / 255
    y = torch.from_numpy(gt[..., ::-1].copy()).permute(2, 0, 1)[None].double() / 255
    assert ours == pytest.approx(pytorch_msssim.ms_ssim(x, y, data_range=1.0).item(), rel=1e-4)
