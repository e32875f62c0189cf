"""The image-quality metrics of Zhao et al.'s Table 1, with BasicSR's metric call.

MS-SSIM, IW-SSIM, GMSD, FSIM and FSIMc come from piq (weight-free, maintained); 1000*l1 and
1000*l2 are the table's scaled errors on [0, 1] images. Every function takes what BasicSR's
validation passes: ``img``, ``img2`` (uint8/float images in [0, 255], BGR, HWC unless
``input_order``), ``crop_border`` and keyword options.
"""
import numpy as np
import piq
import torch
from basicsr.utils.registry import METRIC_REGISTRY

from losses_plugin.checks import OptionError
from losses_plugin.metrics.image_pair import prepared_pair


def _as_tensors(img, img2, crop_border, input_order='HWC', test_y_channel=False, name='metric'):
    """Two (1, C, H, W) float64 tensors in [0, 1], RGB (or Y), borders cropped."""
    pair = []
    for image in prepared_pair(img, img2, crop_border, input_order, test_y_channel, name):
        if image.shape[2] == 3:
            image = image[..., ::-1]  # BGR -> RGB
        pair.append(torch.from_numpy(np.ascontiguousarray(image / 255.)).permute(2, 0, 1)[None].clamp(0, 1))
    return pair


@METRIC_REGISTRY.register()
def calculate_ms_ssim(img, img2, crop_border, input_order='HWC', test_y_channel=False, **kwargs):
    """MS-SSIM (Wang et al. 2003, five levels); higher is better."""
    x, y = _as_tensors(img, img2, crop_border, input_order, test_y_channel, 'calculate_ms_ssim')
    return piq.multi_scale_ssim(x, y, data_range=1.0).item()


@METRIC_REGISTRY.register()
def calculate_iw_ssim(img, img2, crop_border, input_order='HWC', test_y_channel=False, **kwargs):
    """Information-weighted SSIM (Wang and Li 2011); higher is better."""
    x, y = _as_tensors(img, img2, crop_border, input_order, test_y_channel, 'calculate_iw_ssim')
    return piq.information_weighted_ssim(x, y, data_range=1.0).item()


@METRIC_REGISTRY.register()
def calculate_gmsd(img, img2, crop_border, input_order='HWC', test_y_channel=False, **kwargs):
    """Gradient magnitude similarity deviation (Xue et al. 2014); lower is better."""
    x, y = _as_tensors(img, img2, crop_border, input_order, test_y_channel, 'calculate_gmsd')
    return piq.gmsd(x, y, data_range=1.0).item()


@METRIC_REGISTRY.register()
def calculate_fsim(img, img2, crop_border, input_order='HWC', test_y_channel=False, chromatic=False, **kwargs):
    """Feature similarity (Zhang et al. 2011) on luminance, or FSIMc with ``chromatic=True``; higher is better."""
    x, y = _as_tensors(img, img2, crop_border, input_order, test_y_channel, 'calculate_fsim')
    if chromatic and x.shape[1] != 3:
        raise OptionError('calculate_fsim: chromatic (FSIMc) needs RGB images; set test_y_channel: false')
    return piq.fsim(x, y, data_range=1.0, chromatic=chromatic).item()


@METRIC_REGISTRY.register()
def calculate_l1_1000(img, img2, crop_border, input_order='HWC', test_y_channel=False, **kwargs):
    """1000 * mean |x - y| on [0, 1] images (Table 1's l1 row); lower is better."""
    x, y = _as_tensors(img, img2, crop_border, input_order, test_y_channel, 'calculate_l1_1000')
    return 1000 * (x - y).abs().mean().item()


@METRIC_REGISTRY.register()
def calculate_l2_1000(img, img2, crop_border, input_order='HWC', test_y_channel=False, **kwargs):
    """1000 * mean (x - y)^2 on [0, 1] images (Table 1's l2 row); lower is better."""
    x, y = _as_tensors(img, img2, crop_border, input_order, test_y_channel, 'calculate_l2_1000')
    return 1000 * (x - y).square().mean().item()
