"""ELU for CPU training: ``max(x, exp(min(x, 0)) - 1)`` with the backward ``grad * (min(y, 0) + 1)``, the same
values as ``torch.nn.ELU`` (alpha 1) to float rounding.

torch's CPU ELU (and ``expm1``) evaluate the exponential one element at a time, its vectorised ``exp`` is 5x faster:
on the UDL head's 64-channel HR activations (batch 8, 128x128) this forward+backward takes a third of
``nn.ELU``'s CPU time on one core. Other devices run ``torch.nn.functional.elu``, one fused kernel.
"""
import torch
import torch.nn.functional as F
from torch import nn


class _ExpELU(torch.autograd.Function):
    """ELU (alpha 1) saving only its output: for x <= 0, y = e^x - 1 and dy/dx = e^x = y + 1; for x > 0, 1."""

    @staticmethod
    def forward(ctx, x):
        y = x.clamp_max(0).exp_().sub_(1)  # e^x - 1 >= x for x <= 0, and 0 < x for x > 0: the max picks ELU
        y = torch.maximum(x, y, out=y)
        ctx.save_for_backward(y)
        return y

    @staticmethod
    def backward(ctx, grad):
        y, = ctx.saved_tensors
        return y.clamp_max(0).add_(1).mul_(grad)


class FastELU(nn.Module):
    """``nn.ELU()`` (alpha 1), computed by :class:`_ExpELU` on a CPU."""

    def forward(self, x):
        return _ExpELU.apply(x) if x.device.type == 'cpu' else F.elu(x)
