"""The fine-grained dynamic loss, eq. (3)-(6) of ``fine_grained_dynamic_loss.txt`` (our reading;
the bins, anchors and areas are :mod:`losses_plugin.fgd_bins`; K is read from the logits' shape):

    L = L_r + mean(alpha * L_c1 + beta * L_c2)  (+ average_weight * L_avg + sr_weight * L_sr)

- L_r (eq. 5): ``mean|out - target|``; target = gt (``regression_target: gt``, default) or the gt
  anchor (``anchor``, eq. 5 literally: it caps the output at bin centres);
- L_c1 (eq. 3): cross-entropy of the bin logits to the gt bin, per pixel and channel;
- L_c2 (eq. 4, ClassSR's class loss): ``-sum_{i<j} |P_i - P_j|`` per region, lowest for one-hot P;
- L_avg (ClassSR's average loss, optional): ``sum_i |mean_regions(P_i) - 1/M|``, keeps every area in use;
- L_sr (ours, optional): ``mean|sr - target|`` on the backbone's unconfined output.
"""
import torch.nn.functional as F
from basicsr.utils.registry import LOSS_REGISTRY
from torch import nn

from losses_plugin.fgd_bins import anchor_target, bin_index
from losses_plugin.losses.pixel_loss_base import check_choice, check_inputs, check_number

TARGETS = ('gt', 'anchor')


def class_loss(probs):
    """Eq. (4) per region, averaged: ``-sum_{i<j} |P_i - P_j|`` over the M classes of (N, M, h, w)."""
    diffs = (probs.unsqueeze(1) - probs.unsqueeze(2)).abs()  # (N, M, M, h, w), each pair twice
    return -diffs.sum(dim=(1, 2)).mean() / 2


def average_loss(probs):
    """ClassSR's average loss: ``sum_i |mean(P_i) - 1/M|``."""
    return (probs.mean(dim=(0, 2, 3)) - 1 / probs.shape[1]).abs().sum()


@LOSS_REGISTRY.register()
class FineGrainedDynamicLoss(nn.Module):
    """Eq. (6), ``L_r + mean(alpha L_c1 + beta L_c2)``, plus the optional average loss and ``sr_weight`` L1.

    Args:
        alpha (float): weight of the bin classification L_c1. Default: 0.1.
        beta (float): weight of the area classification L_c2. Default: 0.01.
        average_weight (float): weight of ClassSR's average loss (0: off). Default: 0.
        regression_target (str): 'gt' | 'anchor'. Default: 'gt'.
        sr_weight (float): weight of an L1 term on the backbone's unconfined output (ours, not the
            paper's; 0 is the literal eq. 6). Where the predicted bin is far from the truth, tanh
            saturates and the confined output passes no regression gradient to the backbone; early in
            training that is most pixels. Default: 1.0.
        loss_weight (float): multiplier of the total. Default: 1.0.
    """

    def __init__(self, alpha=0.1, beta=0.01, average_weight=0.0, regression_target='gt',
                 sr_weight=1.0, loss_weight=1.0):
        super().__init__()
        name = 'FineGrainedDynamicLoss'
        for option, value in (('alpha', alpha), ('beta', beta), ('average_weight', average_weight),
                              ('sr_weight', sr_weight)):
            check_number(name, option, value, minimum=0)
        check_number(name, 'loss_weight', loss_weight)
        check_choice(name, 'regression_target', regression_target, TARGETS)
        self.alpha, self.beta, self.average_weight, self.sr_weight = alpha, beta, average_weight, sr_weight
        self.regression_target, self.loss_weight = regression_target, loss_weight

    def terms(self, out, target, logits, probs=None, sr=None):
        """Each term of eq. (6), unweighted: ``{'l_r', 'l_c1'[, 'l_c2', 'l_avg', 'l_sr']}``.

        Args:
            out (Tensor): (N, C, H, W) FGDNet's training output.
            target (Tensor): (N, C, H, W) ground truth in [0, 1].
            logits (Tensor): (N, K, C, H, W) bin logits; K (>= 2) is the number of bins.
            probs (Tensor, optional): (N, M, h, w) area-class probabilities (None for a static area).
            sr (Tensor, optional): (N, C, H, W) the backbone's unconfined output (for ``sr_weight``).
        """
        name = 'FineGrainedDynamicLoss'
        check_inputs(name, out, target)
        if logits.dim() != 5 or logits.shape[1] < 2 or logits.shape[:1] + logits.shape[2:] != target.shape:
            raise ValueError(f'{name}: logits must be (N, K, C, H, W) with K >= 2 bins for targets of '
                             f'{tuple(target.shape)}, got {tuple(logits.shape)}')
        num_bins = logits.shape[1]
        bins = bin_index(target.detach(), num_bins)
        unconfined = (sr - target).abs().mean() if sr is not None and self.sr_weight else None
        if self.regression_target == 'anchor':
            target = anchor_target(target.detach(), num_bins).to(out.dtype)
        terms = {'l_r': (out - target).abs().mean(),
                 'l_c1': F.cross_entropy(logits.float(), bins)}
        if probs is not None:
            terms['l_c2'] = class_loss(probs)
            if self.average_weight:
                terms['l_avg'] = average_loss(probs)
        if unconfined is not None:
            terms['l_sr'] = unconfined
        return terms

    def total(self, terms):
        loss = terms['l_r'] + self.alpha * terms['l_c1'] + self.beta * terms.get('l_c2', 0)
        loss = loss + self.average_weight * terms.get('l_avg', 0) + self.sr_weight * terms.get('l_sr', 0)
        return self.loss_weight * loss  # a non-finite total is the training step's to handle (skip or stop)

    def forward(self, out, target, logits=None, probs=None, sr=None):
        if logits is None:
            raise ValueError('FineGrainedDynamicLoss needs the bin logits of FGDNet, which FGDModel provides: '
                             'use model_type: FGDModel with network_g: {type: FGDNet, ...}')
        return self.total(self.terms(out, target, logits, probs, sr))
