"""MS-SSIM loss, eq. (11)-(12) of Zhao et al.: the paper's multi-sigma form or the dyadic pyramid.

``mode: sigmas`` (the paper's speed-up, default): instead of a pyramid, M Gaussians of growing
sigma on the full-resolution image, all with the support of the largest (radius 2*max(sigma), 33x33
for sigmas 0.5..8); ``MS-SSIM(p) = l_M(p) * prod_j cs_j(p)`` with exponents 1, a map per pixel.
``mode: pyramid``: Wang et al.'s classic five-level MS-SSIM (11-tap window of sigma 1.5, weights
0.0448..0.1333, 2x2 average pooling between levels), one value per image and channel.
"""
import torch
import torch.nn.functional as F
from basicsr.utils.registry import LOSS_REGISTRY

from losses_plugin.losses.gaussian_filter import PADDINGS, check_sigmas, check_window_fits
from losses_plugin.checks import check_choice, check_number
from losses_plugin.losses.pixel_loss_base import PixelLoss, as_images
from losses_plugin.losses.ssim_loss import (luminance_and_contrast_structure, luminance_and_contrast_structure_against,
                                            reference_moments)

MODES = ('sigmas', 'pyramid')
PAPER_SIGMAS = (0.5, 1.0, 2.0, 4.0, 8.0)
WANG_WEIGHTS = (0.0448, 0.2856, 0.3001, 0.2363, 0.1333)
PYRAMID_SIGMA, PYRAMID_RADIUS = 1.5, 5


def sigmas_radius(sigmas):
    """Half-width of mode 'sigmas' windows: every Gaussian has the support of the largest, radius 2*max(sigma)."""
    return int(2 * max(sigmas))


def ms_ssim_sigmas_map(pred, target, sigmas=PAPER_SIGMAS, data_range=1.0, padding='valid'):
    """Per-pixel multi-sigma MS-SSIM; (N, C, H, W) -> (N, C, H', W'). The largest sigma gives l."""
    sigmas = sorted(sigmas)
    luminance, contrast_structure = luminance_and_contrast_structure(
        pred, target, sigmas, sigmas_radius(sigmas), data_range, padding)
    return luminance[:, :, -1] * contrast_structure.prod(dim=2)


def pyramid_reference(target, levels=len(WANG_WEIGHTS)):
    """The target's side of :func:`ms_ssim_pyramid`, computed once for many predictions: per level, the
    (2x2-average-pooled) target and its filtered moments."""
    reference = []
    for level in range(levels):
        reference.append((target, reference_moments(target, (PYRAMID_SIGMA,), PYRAMID_RADIUS)))
        if level < levels - 1:
            target = F.avg_pool2d(target, 2, padding=[s % 2 for s in target.shape[-2:]])
    return reference


def ms_ssim_pyramid(pred, target, weights=WANG_WEIGHTS, data_range=1.0, reference=None):
    """Classic MS-SSIM per image and channel, (N, C); cs and SSIM clamped at 0 before the powers.

    ``reference`` (:func:`pyramid_reference` of ``target``) lets S predictions per target, ``pred`` of
    (S*N, C, H, W), share the target's filtering; the result is then (S*N, C).
    """
    min_side = (2 * PYRAMID_RADIUS) * 2 ** (len(weights) - 1) + 1
    if min(pred.shape[-2:]) < min_side:
        raise ValueError(f"MSSSIMLoss: mode 'pyramid' with {len(weights)} levels needs images of at least "
                         f"{min_side}x{min_side}, got {tuple(pred.shape[-2:])}; use mode 'sigmas'")
    reference = reference or pyramid_reference(target, len(weights))
    values = []
    for level, (target_level, moments) in enumerate(reference[:len(weights)]):
        luminance, contrast_structure = luminance_and_contrast_structure_against(
            pred, target_level, moments, (PYRAMID_SIGMA,), PYRAMID_RADIUS, data_range)
        if level < len(weights) - 1:
            values.append(contrast_structure.mean(dim=(-3, -2, -1)))
            pred = F.avg_pool2d(pred, 2, padding=[s % 2 for s in pred.shape[-2:]])
        else:
            values.append((luminance * contrast_structure).mean(dim=(-3, -2, -1)))
    stacked = torch.relu(torch.stack(values))
    exponents = stacked.new_tensor(weights).view(-1, 1, 1)
    return (stacked ** exponents).prod(dim=0)


@LOSS_REGISTRY.register()
class MSSSIMLoss(PixelLoss):
    """``1 - MS-SSIM`` (eq. 12).

    Args:
        mode (str): 'sigmas' (the paper's, default) | 'pyramid' (Wang et al. 2003).
        sigmas (list[float]): the Gaussians of mode 'sigmas'. Default: (0.5, 1, 2, 4, 8).
        data_range (float): image range (C1, C2). Default: 1.0.
        padding (str): mode 'sigmas' only: 'valid' | 'reflect' | 'zero'. Default: 'valid'.
        loss_weight (float): multiplier, as BasicSR's. Default: 1.0.
        reduction (str): 'none' (the 1 - MS-SSIM map in mode 'sigmas', (N, C, 1, 1) values in mode
            'pyramid') | 'mean' | 'sum'. Default: 'mean'.
    """

    def __init__(self, mode='sigmas', sigmas=PAPER_SIGMAS, data_range=1.0, padding='valid', loss_weight=1.0,
                 reduction='mean'):
        super().__init__(loss_weight, reduction)
        check_choice('MSSSIMLoss', 'mode', mode, MODES)
        check_choice('MSSSIMLoss', 'padding', padding, PADDINGS)
        check_number('MSSSIMLoss', 'data_range', data_range, above=0)
        check_sigmas('MSSSIMLoss', sigmas)
        self.mode, self.sigmas, self.data_range, self.padding = mode, tuple(sigmas), data_range, padding

    def ms_ssim(self, pred, target):
        pred, target = as_images(pred), as_images(target)
        if self.mode == 'pyramid':
            return ms_ssim_pyramid(pred, target, data_range=self.data_range)[..., None, None]
        check_window_fits('MSSSIMLoss', pred.shape[-2:], sigmas_radius(self.sigmas), self.padding)
        return ms_ssim_sigmas_map(pred, target, self.sigmas, self.data_range, self.padding)

    def loss_map(self, pred, target):
        return 1 - self.ms_ssim(pred, target)

    def weight_map(self, pred, target):
        """The detached 1 - MS-SSIM map (mode 'sigmas'): where structure differs."""
        return self.loss_map(pred.detach(), target.detach())
