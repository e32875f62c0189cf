"""Shared mechanics of every loss in this package: base pixel errors, reductions, and the BasicSR
loss interface (option and input checks are :mod:`losses_plugin.checks`).

Reductions here are plain means over elements, ``1/(CHW) * sum(w * err)`` per the papers, not
BasicSR's ``weighted_loss`` mean, which divides by ``sum(w)``.
"""
import torch
from torch import nn

from losses_plugin.checks import check_choice, check_finite, check_inputs, check_number

REDUCTIONS = ('none', 'mean', 'sum')
BASE_ERRORS = ('l1', 'mse', 'charbonnier')
CHARBONNIER_EPS = 1e-12  # as BasicSR's CharbonnierLoss


def base_error(pred, target, base):
    """Per-element error: ``|e|`` (l1), ``e^2`` (mse) or ``sqrt(e^2 + eps)`` (charbonnier)."""
    diff = pred - target
    if base == 'l1':
        return diff.abs()
    if base == 'mse':
        return diff.square()
    return torch.sqrt(diff.square() + CHARBONNIER_EPS)


def reduce(loss_map, reduction):
    if reduction == 'mean':
        return loss_map.mean()
    if reduction == 'sum':
        return loss_map.sum()
    return loss_map


def at_least_float32(x):
    """Half and bfloat16 -> float32 (AMP safety); float32 and float64 unchanged."""
    return x.float() if x.dtype in (torch.float16, torch.bfloat16) else x


def as_images(x):
    """(N, C, H, W) or (N, T, C, H, W) -> (N*T, C, H, W): video frames are weighted as images."""
    return x.reshape(-1, *x.shape[-3:])


class PixelLoss(nn.Module):
    """Base of the pixel-weighted losses: ``loss_weight * reduce(loss_map(pred, target) * weight)``.

    Subclasses implement ``loss_map(pred, target)`` (per-pixel losses, the input's size unless a
    window crops the border) and
    ``weight_map(pred, target)`` (the detached map that the paper derives from the images), and may
    implement ``error_sum`` (the summed loss map by a faster route, used when no ``weight`` is given
    and the loss is reduced).
    Half-precision inputs are computed in float32 (float64 stays float64), and a non-finite result
    is traced to its input.

    Args:
        loss_weight (float): multiplier of the loss. Default: 1.0.
        reduction (str): 'none' | 'mean' | 'sum'. Default: 'mean' (plain mean over elements).
    """

    def __init__(self, loss_weight=1.0, reduction='mean'):
        super().__init__()
        name = type(self).__name__
        check_number(name, 'loss_weight', loss_weight)
        check_choice(name, 'reduction', reduction, REDUCTIONS)
        self.loss_weight = loss_weight
        self.reduction = reduction

    def loss_map(self, pred, target):
        raise NotImplementedError

    def error_sum(self, pred, target):
        """``loss_map(pred, target).sum()`` by a faster route, or None where there is none."""
        return None

    def weight_map(self, pred, target):
        raise NotImplementedError

    def forward(self, pred, target, weight=None, **kwargs):
        """``loss_weight`` x the reduced loss map (a plain mean over elements for ``mean``).

        Args:
            pred (Tensor): (N, C, H, W) or (N, T, C, H, W), BasicSR's [0, 1] range.
            target (Tensor): same shape as pred.
            weight (Tensor, optional): element-wise weights broadcast to pred's shape; the mean
                stays a plain mean over elements.
        """
        name = type(self).__name__
        check_inputs(name, pred, target, weight)
        pred32, target32 = at_least_float32(pred), at_least_float32(target)
        # under AMP, convolutions and matrix products would drop back to half precision
        with torch.autocast(device_type=pred.device.type, enabled=False):
            total = self.error_sum(pred32, target32) if weight is None and self.reduction != 'none' else None
            if total is not None:
                reduced = total / pred.numel() if self.reduction == 'mean' else total
            else:
                loss_map = self.loss_map(pred32, target32)
                if weight is not None:
                    if loss_map.numel() != pred.numel():
                        raise ValueError(f'{name}: weight needs a loss map of the input size, but this loss scores '
                                         f'{tuple(loss_map.shape)} of {tuple(pred.shape)}; use padding reflect or zero')
                    loss_map = loss_map.reshape(pred.shape) * at_least_float32(weight)
                reduced = reduce(loss_map, self.reduction)
        loss = self.loss_weight * reduced
        # One check of the result instead of a pass over each input on every call. A non-finite pred (a
        # diverging network) gives a non-finite loss, which the training step's non-finite policy reports;
        # a non-finite target or weight is bad data.
        if self.reduction == 'none' or not torch.isfinite(loss):
            check_finite(name, target=target, weight=weight)
        return loss
