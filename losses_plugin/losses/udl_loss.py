"""The uncertainty-driven loss (UDL; Ning et al. 2021), the TLW paper's comparison (eq. 2-3 of
``trainable_loss_weights_tlw.txt``), in its two stages.

- ``stage: esu`` (eq. 2, estimating the uncertainty): ``mean(exp(-s) * |sr - hr|) + 2 * mean(s)``
  with s = log-uncertainty from the network's head (eq. 2 prints ``e^{s}``; the Jeffreys-prior
  posterior of eq. 1 divides the error by the uncertainty, so ``e^{-s}`` as Ning et al.);
- ``stage: udl`` (eq. 3): ``mean(w * |sr - hr|)`` with ``w = s - min_HW(s) + 1`` per image and
  channel, s from the frozen stage-1 network (detached): uncertain pixels weigh more.
"""
import torch
from basicsr.utils.registry import LOSS_REGISTRY
from torch import nn

from losses_plugin.checks import check_choice, check_inputs, check_number
from losses_plugin.losses.pixel_loss_base import at_least_float32

STAGES = ('esu', 'udl')


def udl_weights(s):
    """``s - min_HW(s) + 1`` per image and channel, detached; >= 1."""
    s = s.detach()
    return s - s.amin(dim=(-2, -1), keepdim=True) + 1


@LOSS_REGISTRY.register()
class UDLLoss(nn.Module):
    """Uncertainty-driven loss (Ning et al.): stage ``esu`` ``mean(exp(-s)|e|) + 2 mean(s)``, stage ``udl``
    ``mean((s - min s + 1)|e|)``.

    Args:
        stage (str): 'esu' | 'udl'; UDLModel reads it to decide where s comes from. Default: 'esu'.
        loss_weight (float): multiplier. Default: 1.0.
    """

    def __init__(self, stage='esu', loss_weight=1.0):
        super().__init__()
        check_choice('UDLLoss', 'stage', stage, STAGES)
        check_number('UDLLoss', 'loss_weight', loss_weight)
        self.stage, self.loss_weight = stage, loss_weight

    def forward(self, pred, target, s=None):
        """The loss of the stage, from the uncertainty ``s`` that UDLModel gives it.

        Args:
            pred (Tensor): (N, C, H, W) output.
            target (Tensor): (N, C, H, W) ground truth.
            s (Tensor): (N, C or 1, H, W) log-uncertainty (trained in stage esu, constant in stage udl).
        """
        if s is None:
            raise ValueError('UDLLoss needs the uncertainty s, which UDLModel provides: use model_type: UDLModel')
        check_inputs('UDLLoss', pred, target, s, weight_name='s')
        pred, target, s = at_least_float32(pred), at_least_float32(target), at_least_float32(s)
        error = (pred - target).abs()
        if self.stage == 'esu':
            loss = (torch.exp(-s) * error).mean() + 2 * s.mean()
        else:
            loss = (udl_weights(s) * error).mean()
        return self.loss_weight * loss

