"""RMSE, eq. (9) of the asymmetric-loss paper, with BasicSR's metric conventions."""
import numpy as np
from basicsr.utils.registry import METRIC_REGISTRY

from losses_plugin.metrics.image_pair import prepared_pair


@METRIC_REGISTRY.register()
def calculate_rmse(img, img2, crop_border, input_order='HWC', test_y_channel=False, **kwargs):
    """Root-mean-square error on the 0-255 scale, as BasicSR's ``calculate_psnr`` takes images.

    Args:
        img (ndarray): image in [0, 255], HWC or CHW (``input_order``).
        img2 (ndarray): the other image, likewise.
        crop_border (int): pixels cropped on each border first.
        input_order (str): 'HWC' or 'CHW'. Default: 'HWC'.
        test_y_channel (bool): compare the Y channel of YCbCr only.
    Returns:
        float: ``sqrt(mean((img - img2)^2))``.
    """
    img, img2 = prepared_pair(img, img2, crop_border, input_order, test_y_channel, 'calculate_rmse')
    return float(np.sqrt(np.mean((img - img2) ** 2)))
