"""Asymmetric grey-value loss (``asymmetric_loss_grey_weights.txt``): dark pixels weigh more.

The label's grey image is min-max normalised per image (eq. 1) and turned into a weight mask,
either ``0.5*tanh(1/(I + 1e-10)) + 0.5`` (eq. 2) or ``tanh(Q1/(I + 1e-10))`` with Q1 the image's
25th percentile (the Table 1 pseudo-code). The mask multiplies the base loss (eq. 5) or, as in the
pseudo-code, both images before the base loss.
"""
import torch
from basicsr.utils.registry import LOSS_REGISTRY

from losses_plugin.checks import check_choice
from losses_plugin.losses.pixel_loss_base import BASE_ERRORS, PixelLoss, as_images, at_least_float32, base_error
from losses_plugin.losses.weighted_error import FAST_BASES, weighted_error_sum

MASKS = ('tanh_inverse', 'quartile')
APPLY = ('loss', 'io')
RECIPROCAL_EPS = 1e-10  # the paper's guard against division by zero
BT601_LUMA = (0.299, 0.587, 0.114)  # RGB order, as BasicSR feeds tensors
QUARTILE_BUCKETS = 1024  # a power of two: value * QUARTILE_BUCKETS is exact in floating point


def grey_image(img, per_channel=False):
    """(N, C, H, W) -> (N, 1, H, W) BT.601 luma for RGB, the channel itself for grey; or the
    channels unchanged with ``per_channel``."""
    if per_channel or img.shape[1] == 1:
        return img
    if img.shape[1] != 3:
        raise ValueError(f'AsymmetricLoss: a grey image needs 1 or 3 channels, got {img.shape[1]}; '
                         'set per_channel: true for other channel counts')
    red, green, blue = BT601_LUMA
    grey = img[:, :1] * red
    return grey.add_(img[:, 1:2], alpha=green).add_(img[:, 2:], alpha=blue)


def min_max_normalize(img):
    """Eq. (1) per image and channel over H, W; a constant image maps to 0."""
    flat = img.flatten(2)
    low, high = flat.amin(dim=2, keepdim=True), flat.amax(dim=2, keepdim=True)  # aminmax: 18x slower on a CPU
    span = (high - low).clamp_min_(torch.finfo(img.dtype).tiny)
    return (flat - low).div_(span).view_as(img)


def lower_quartile(img):
    """Per image and channel 25th percentile over H, W, linearly interpolated as ``numpy.percentile``.

    Exact, by a one-level radix select (``torch.quantile`` refuses large inputs; a ``topk`` of the smallest
    quarter costs 3x this on a CPU): the values are counted into ``QUARTILE_BUCKETS`` buckets over [0, 1]
    (values outside join the end buckets, so bucket order is value order), the cumulative counts give the
    bucket that holds the lower order statistic and its rank there, and a ``topk`` of the few smallest values
    from that bucket up gives both order statistics the interpolation needs. Images whose values crowd into
    one bucket cost as much as the full ``topk``.
    """
    flat = img.flatten(2)
    size = flat.shape[2]
    position = 0.25 * (size - 1)
    below = int(position)
    # x 2^10 is exact, so the bucket of a value is floor(value * 2^10), clamped; NaN lands in bucket 0
    bucket = flat.mul(QUARTILE_BUCKETS).clamp_(0, QUARTILE_BUCKETS - 1).long().clamp_(0, QUARTILE_BUCKETS - 1)
    counts = bucket.new_zeros(*flat.shape[:2], QUARTILE_BUCKETS).scatter_add_(2, bucket, torch.ones_like(bucket))
    cumulative = counts.cumsum_(2)
    first = torch.searchsorted(cumulative, cumulative.new_full((*flat.shape[:2], 1), below), right=True)
    rank = below - torch.where(first > 0, cumulative.gather(2, (first - 1).clamp_(min=0)), 0)
    # values of earlier buckets move past every candidate (exact for |value| < 1e31)
    candidates = torch.add(flat, bucket < first, alpha=torch.finfo(flat.dtype).max)
    smallest = candidates.topk(min(int(rank.max()) + 2, size), dim=2, largest=False).values
    low = smallest.gather(2, rank)
    if position == below:
        return low.unsqueeze(-1)
    high = smallest.gather(2, rank + 1)
    return (low + (position - below) * (high - low)).unsqueeze(-1)


@torch.no_grad()
def grey_weight_mask(target, mask='tanh_inverse', normalize=True, per_channel=False):
    """The weight mask M from the label, detached.

    Args:
        target (Tensor): (N, C, H, W) or (N, T, C, H, W) label in [0, 1].
        mask (str): 'tanh_inverse' (eq. 2, values in [0.881, 1]) or 'quartile' (Table 1, in [0, 1];
            an image whose lower quartile is black gets M = 0 everywhere, as the formula gives).
        normalize (bool): min-max normalise the grey image first (eq. 1).
        per_channel (bool): one mask per channel instead of one from the grey image.
    Returns:
        Tensor: M with 1 or C channels, broadcastable to target.
    """
    images = as_images(target)
    grey = grey_image(images, per_channel)
    if normalize:
        grey = min_max_normalize(grey)
    # in place on a fresh 1-channel map: a few cheap passes instead of new tensors
    weights = grey + RECIPROCAL_EPS
    # tanh(z) = 2 sigmoid(2z) - 1 (sigmoid is vectorised on a CPU, tanh 7x slower)
    if mask == 'tanh_inverse':  # 0.5 tanh(z) + 0.5 = sigmoid(2z)
        weights = weights.reciprocal_().mul_(2).sigmoid_()
    else:
        weights = torch.div(lower_quartile(grey), weights, out=weights).mul_(2).sigmoid_().mul_(2).sub_(1)
    return weights.reshape(*target.shape[:-3], *weights.shape[-3:])


@LOSS_REGISTRY.register()
class AsymmetricLoss(PixelLoss):
    """Asymmetric grey-value loss: ``mean(M * base(pred, target))`` (eq. 5) or
    ``mean(base(M*pred, M*target))`` (Table 1).

    Args:
        base (str): 'l1' | 'mse' | 'charbonnier' (the paper's MAE and MSE, and Charbonnier). Default: 'l1'.
        mask (str): 'tanh_inverse' (eq. 2) | 'quartile' (Table 1). Default: 'tanh_inverse'.
        apply (str): 'loss' (eq. 5) | 'io' (Table 1: weight output and label). Default: 'loss'.
        normalize (bool): min-max normalise the grey image (eq. 1). Default: True.
        per_channel (bool): mask per channel instead of from the BT.601 grey image. Default: False.
        loss_weight (float): multiplier, as BasicSR's. Default: 1.0.
        reduction (str): 'none' | 'mean' | 'sum', as BasicSR's; 'mean' is a plain mean over elements. Default: 'mean'.

    Example:
        >>> loss = AsymmetricLoss(base='mse')
        >>> loss(torch.rand(2, 3, 8, 8), torch.rand(2, 3, 8, 8))
    """

    def __init__(self, base='l1', mask='tanh_inverse', apply='loss', normalize=True, per_channel=False,
                 loss_weight=1.0, reduction='mean'):
        super().__init__(loss_weight, reduction)
        check_choice('AsymmetricLoss', 'base', base, BASE_ERRORS)
        check_choice('AsymmetricLoss', 'mask', mask, MASKS)
        check_choice('AsymmetricLoss', 'apply', apply, APPLY)
        check_choice('AsymmetricLoss', 'normalize', normalize, (True, False))
        check_choice('AsymmetricLoss', 'per_channel', per_channel, (True, False))
        self.base, self.mask, self.apply = base, mask, apply
        self.normalize, self.per_channel = normalize, per_channel

    def weight_map(self, pred, target):
        return grey_weight_mask(at_least_float32(target), self.mask, self.normalize, self.per_channel)

    def loss_map(self, pred, target):
        weights = self.weight_map(pred, target)
        if self.apply == 'io':
            return base_error(weights * pred, weights * target, self.base)
        return weights * base_error(pred, target, self.base)

    def _effective_weights(self, target, error, sign):
        """The weight on base(e): M, or for ``apply: io`` (M >= 0) |M e| = M |e| and (M e)^2 = M^2 e^2."""
        weights = self.weight_map(None, target)
        return weights.square_() if self.apply == 'io' and self.base == 'mse' else weights

    def error_sum(self, pred, target):
        if self.base not in FAST_BASES:
            return None
        return weighted_error_sum(pred, target, self.base, self._effective_weights)
