"""calculate_rmse, eq. (9) of the asymmetric paper, with BasicSR's metric call."""
import numpy as np
import pytest
from basicsr.metrics import calculate_metric


def test_rmse_by_hand_with_crop_and_registry():
    img = np.zeros((6, 6, 3), np.uint8)
    img2 = img.copy()
    img2[1:5, 1:5] = 3  # inside the crop: error 3 on 16 of 16 pixels -> 3
    img2[0, 0] = 255  # cropped away
    value = calculate_metric({'img': img, 'img2': img2}, {'type': 'calculate_rmse', 'crop_border': 1})
    assert value == pytest.approx(3.0)
    half = img.copy()
    half[:, :3] = 4  # no crop: 4 on half of the pixels -> sqrt(8)
    assert calculate_metric({'img': img, 'img2': half}, {'type': 'calculate_rmse', 'crop_border': 0}) == pytest.approx(
        np.sqrt(8))


def test_rmse_y_channel_and_shape_check():
    rng = np.random.default_rng(0)
    img = rng.integers(0, 256, (8, 8, 3)).astype(np.uint8)
    assert calculate_metric({'img': img, 'img2': img}, {'type': 'calculate_rmse', 'crop_border': 0,
                                                        'test_y_channel': True}) == 0
    with pytest.raises(ValueError, match='image shapes differ'):
        calculate_metric({'img': img, 'img2': img[:4]}, {'type': 'calculate_rmse', 'crop_border': 0})


def test_chw_input_order_gives_the_hwc_value():
    """input_order 'CHW' (BasicSR's option): the same images channel-first score the same, crop included."""
    rng = np.random.default_rng(1)
    img, img2 = (rng.integers(0, 256, (9, 7, 3)).astype(np.uint8) for _ in range(2))
    hwc = calculate_metric({'img': img, 'img2': img2}, {'type': 'calculate_rmse', 'crop_border': 2})
    chw = calculate_metric({'img': img.transpose(2, 0, 1), 'img2': img2.transpose(2, 0, 1)},
                           {'type': 'calculate_rmse', 'crop_border': 2, 'input_order': 'CHW'})
    expected = np.sqrt(np.mean((img[2:-2, 2:-2].astype(float) - img2[2:-2, 2:-2]) ** 2))
    assert hwc == pytest.approx(expected) and chw == pytest.approx(expected)
