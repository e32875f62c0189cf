"""RMSE, eq. (9) of the asymmetric-loss paper, with BasicSR's metric conventions."""
import numpy as np
from basicsr.metrics.metric_util import reorder_image, to_y_channel
from basicsr.utils.registry import METRIC_REGISTRY


@METRIC_REGISTRY.register()
def calculate_rmse(img, img2, crop_border, input_order='HWC', test_y_channel=False, **kwargs):
    """Root-mean-square error on the 0-255 scale, as BasicSR's ``calculate_psnr`` takes images.

    Args:
        img, img2 (ndarray): images in [0, 255], HWC or CHW (``input_order``).
        crop_border (int): pixels cropped on each border first.
        test_y_channel (bool): compare the Y channel of YCbCr only.
    Returns:
        float: ``sqrt(mean((img - img2)^2))``.
    """
    if img.shape != img2.shape:
        raise ValueError(f'calculate_rmse: image shapes differ: {img.shape} and {img2.shape}')
    img = reorder_image(img, input_order=input_order).astype(np.float64)
    img2 = reorder_image(img2, input_order=input_order).astype(np.float64)
    if crop_border:
        img = img[crop_border:-crop_border, crop_border:-crop_border, ...]
        img2 = img2[crop_border:-crop_border, crop_border:-crop_border, ...]
    if test_y_channel:
        img, img2 = to_y_channel(img), to_y_channel(img2)
    return float(np.sqrt(np.mean((img - img2) ** 2)))
