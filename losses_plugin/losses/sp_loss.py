"""SPLoss, the edge-aware structure-preserving loss (Wang et al., ``sploss_edge_aware_zh.txt``).

A pixel is *blurred* when its error ``e = pred - target`` (eq. 1) has the sign of the target's
Laplacian there (eq. 2): blurring lowers a peak (lap < 0, e < 0) and raises a valley (lap > 0,
e > 0). Such pixels get weight ``1 + alpha*|lap|`` (eq. 3), and the loss is the plain mean of the
weighted error (eq. 4). alpha = 0 is L1.
"""
import torch
from basicsr.utils.registry import LOSS_REGISTRY

from losses_plugin.checks import check_choice, check_number
from losses_plugin.losses.pixel_loss_base import BASE_ERRORS, PixelLoss, at_least_float32, base_error
from losses_plugin.losses.weighted_error import FAST_BASES, weighted_error_sum


def laplacian(img, scale=1.0):
    """Per-channel 4-neighbour Laplacian ``[[0,1,0],[1,-4,1],[0,1,0]]`` with replicate padding, times ``scale``.

    (..., H, W) -> (..., H, W). Built as ``-4*scale*img`` plus the four scaled shifted images, in place;
    with replicate padding a border pixel's missing neighbour is the pixel itself. Several times faster
    on CPU than padding and a grouped convolution.
    """
    lap = img * (-4 * scale)
    lap[..., 1:, :].add_(img[..., :-1, :], alpha=scale)
    lap[..., :-1, :].add_(img[..., 1:, :], alpha=scale)
    lap[..., :, 1:].add_(img[..., :, :-1], alpha=scale)
    lap[..., :, :-1].add_(img[..., :, 1:], alpha=scale)
    lap[..., :1, :].add_(img[..., :1, :], alpha=scale)
    lap[..., -1:, :].add_(img[..., -1:, :], alpha=scale)
    lap[..., :, :1].add_(img[..., :, :1], alpha=scale)
    lap[..., :, -1:].add_(img[..., :, -1:], alpha=scale)
    return lap


@torch.no_grad()
def blur_factor_map(pred, target, data_range=1.0):
    """Eq. (2): ``|lap(target)|`` where lap and e = pred - target agree in sign (lap > 0, e > 0 or
    lap <= 0, e <= 0), else 0. Detached. Laplacian in units of ``data_range`` (BasicSR's [0, 1]).

    Args:
        pred (Tensor): (N, C, H, W) or (N, T, C, H, W) output.
        target (Tensor): ground truth, the shape of pred.
        data_range (float): the images' value range (1 for BasicSR, 255 for 0-255 pipelines).
    Returns:
        Tensor: m, the shape of pred, >= 0.
    """
    lap = laplacian(target) / data_range
    blurred = (lap > 0) == (pred - target > 0)
    return torch.where(blurred, lap.abs(), torch.zeros_like(lap))


@LOSS_REGISTRY.register()
class SPLoss(PixelLoss):
    """Structure-preserving loss, eq. (1)-(4): ``mean((1 + alpha*m) * base(pred - target))``.

    Args:
        alpha (float): penalty factor for blurred pixels (eq. 3), >= 0. Default: 2.0 (the paper's).
        base (str): 'l1' (the paper's) | 'mse' | 'charbonnier'. Default: 'l1'.
        data_range (float): range of the images (1.0 for BasicSR's [0, 1]). Default: 1.0.
        loss_weight (float): multiplier, as BasicSR's. Default: 1.0.
        reduction (str): 'none' | 'mean' | 'sum', as BasicSR's; 'mean' is a plain mean over elements. Default: 'mean'.

    Example:
        >>> loss = SPLoss(alpha=2.0)
        >>> loss(torch.rand(2, 3, 8, 8), torch.rand(2, 3, 8, 8))
    """

    def __init__(self, alpha=2.0, base='l1', data_range=1.0, loss_weight=1.0, reduction='mean'):
        super().__init__(loss_weight, reduction)
        check_number('SPLoss', 'alpha', alpha, minimum=0)
        check_choice('SPLoss', 'base', base, BASE_ERRORS)
        check_number('SPLoss', 'data_range', data_range, above=0)
        self.alpha, self.base, self.data_range = alpha, base, data_range

    def weight_map(self, pred, target):
        """Eq. (3): ``w = 1 + alpha * m``, detached."""
        return 1 + self.alpha * blur_factor_map(at_least_float32(pred), at_least_float32(target), self.data_range)

    def loss_map(self, pred, target):
        if self.alpha == 0:
            return base_error(pred, target, self.base)  # L1 (or the chosen base) to the last bit
        return self.weight_map(pred, target) * base_error(pred, target, self.base)

    def _fast_weights(self, target, error, sign):
        """w of eq. (3) in three in-place passes. m = relu(lap * sign(e)) equals eq. (2)'s map wherever
        e != 0; where e = 0 the weight multiplies |e| = 0 and sign(e) = 0, so loss and gradient agree."""
        lap = laplacian(target, self.alpha / self.data_range)  # alpha > 0 commutes with the relu
        return lap.mul_(torch.sign(error) if sign is None else sign).relu_().add_(1)

    def error_sum(self, pred, target):
        if self.alpha == 0 or self.base not in FAST_BASES:
            return None
        return weighted_error_sum(pred, target, self.base, self._fast_weights)
