"""Shared mechanics of every loss in this package: option checks, input checks, base pixel errors,
reductions, and the BasicSR loss interface.

Reductions here are plain means over elements, ``1/(CHW) * sum(w * err)`` per the papers, not
BasicSR's ``weighted_loss`` mean, which divides by ``sum(w)``.
"""
import torch
from torch import nn

REDUCTIONS = ('none', 'mean', 'sum')
BASE_ERRORS = ('l1', 'mse', 'charbonnier')
CHARBONNIER_EPS = 1e-12  # as BasicSR's CharbonnierLoss


def check_choice(loss_name, option, value, choices):
    if value not in choices:
        raise ValueError(f"{loss_name}: option '{option}' must be one of {', '.join(map(repr, choices))}, got {value!r}")


def check_number(loss_name, option, value, minimum=None):
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ValueError(f"{loss_name}: option '{option}' must be a number, got {value!r}")
    if minimum is not None and value < minimum:
        raise ValueError(f"{loss_name}: option '{option}' must be >= {minimum}, got {value!r}")


def check_inputs(loss_name, pred, target, weight=None):
    """Shapes and dtypes BasicSR feeds: floating tensors of one shape, at least (C, H, W)."""
    for name, tensor in (('pred', pred), ('target', target)):
        if not torch.is_tensor(tensor) or not tensor.is_floating_point():
            raise ValueError(f'{loss_name}: {name} must be a floating-point tensor, got '
                             f'{getattr(tensor, "dtype", type(tensor).__name__)}')
    if pred.shape != target.shape:
        raise ValueError(f'{loss_name}: pred and target must have the same shape, got {tuple(pred.shape)} '
                         f'and {tuple(target.shape)}')
    if pred.dim() < 4:
        raise ValueError(f'{loss_name}: expected (N, C, H, W) or (N, T, C, H, W) tensors, got {tuple(pred.shape)}')
    if weight is not None:
        try:
            fits = torch.broadcast_shapes(weight.shape, pred.shape) == pred.shape
        except RuntimeError:
            fits = False
        if not fits:
            raise ValueError(f'{loss_name}: weight of shape {tuple(weight.shape)} does not broadcast to '
                             f'{tuple(pred.shape)}')


def check_finite(loss_name, **tensors):
    for name, tensor in tensors.items():
        if tensor is not None and not torch.isfinite(tensor).all():
            raise ValueError(f'{loss_name}: {name} contains NaN or Inf')


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
        """Args:
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
        # One check of the result instead of a pass over each input on every call.
        if self.reduction == 'none' or not torch.isfinite(loss):
            check_finite(name, pred=pred, target=target, weight=weight)
        return loss
