"""Trainable loss weights (TLW), ``trainable_loss_weights_tlw.txt``: the weight criterion WC (eq. 4)
and the SR network's loss (eq. 11-13). :class:`~losses_plugin.models.tlw_model.TLWModel` samples the
weights and runs the EM iteration (Algorithm 1).
"""
import torch
from basicsr.utils.registry import LOSS_REGISTRY
from torch import nn

from losses_plugin.checks import OptionError, check_choice, check_inputs, check_number
from losses_plugin.losses.pixel_loss_base import at_least_float32
from losses_plugin.losses.weighted_error import weighted_error_sum

FORMS = ('weighted_sum', 'log_posterior')
WC_EPS = 1e-3


def mix_images(w, sr, gt):
    """Eq. (4)'s pair: x_w takes gt where w is 1, x_{1-w} takes sr there. w may carry a leading sample axis."""
    return (1 - w) * sr + w * gt, w * sr + (1 - w) * gt


def weight_criterion(judge, w, sr, gt, eps=WC_EPS, reference=None):
    """Eq. (4): ``WC(w) = (D(x_{1-w}, x) + eps) / (D(x_w, x) + eps)``, per image.

    Weights that put gt where sr is wrong bring x_w close to x and push x_{1-w} away: high WC.

    Args:
        judge (Judge or callable): D(img, ref) -> (N,) distances; a
            :class:`~losses_plugin.losses.tlw_judge.Judge` shares the gt's side between all images.
        w (Tensor): (N, C, H, W) or (T, N, C, H, W) weights in [0, 1].
        sr (Tensor): (N, C, H, W) SR output.
        gt (Tensor): (N, C, H, W) ground truth.
        eps (float): eq. (4)'s epsilon. Default: 1e-3.
        reference (object, optional): ``judge.reference(gt)`` when the caller already has it (TLWModel: once per batch).
    Returns:
        Tensor: (N,) or (T, N); differentiable in w (and sr).
    """
    samples = w.shape[:-4]  # () or (T,)
    x_w, x_1mw = mix_images(w, sr, gt)
    images = torch.cat([x_w.reshape(-1, *gt.shape[1:]), x_1mw.reshape(-1, *gt.shape[1:])])
    if hasattr(judge, 'distance'):  # one call for both images of every sample, the gt side computed once
        distances = judge.distance(images, judge.reference(gt) if reference is None else reference)
    else:
        distances = judge(images, gt.expand(2, *samples, *gt.shape).reshape(-1, *gt.shape[1:]))
    d_w, d_1mw = distances.clamp_min(0).reshape(2, *samples, gt.shape[0])
    return (d_1mw + eps) / (d_w + eps)


@LOSS_REGISTRY.register()
class TLWLoss(nn.Module):
    """The SR loss of eq. (13) for T sampled weights w_i with criteria WC_i (both constants):

    - ``form: weighted_sum`` (default): per image ``sum_i WC_i * mean(w_i * err) / sum_i WC_i``, i.e.
      eq. (13) normalised by ``sum_i WC_i`` so the loss scale does not follow the judge's;
    - ``form: log_posterior`` (the reference code): per image
      ``-log(sum_i WC_i * exp(-mean(w_i * err)) / sum_i WC_i)``.

    err is ``|x - x_hat|`` (``base: l1``) or ``(x - x_hat)^2`` with the weights divided by
    ``|x - x_hat| + mse_offset`` (``base: mse``, section III-D), then averaged over the batch.

    Args:
        base (str): 'l1' | 'mse'. Default: 'l1'.
        form (str): 'weighted_sum' | 'log_posterior'. Default: 'weighted_sum'.
        mse_offset (float): the 0.1 of the MSE weight modification. Default: 0.1.
        loss_weight (float): multiplier. Default: 1.0.
    """

    def __init__(self, base='l1', form='weighted_sum', mse_offset=0.1, loss_weight=1.0):
        super().__init__()
        check_choice('TLWLoss', 'base', base, ('l1', 'mse'))
        check_choice('TLWLoss', 'form', form, FORMS)
        check_number('TLWLoss', 'mse_offset', mse_offset, minimum=0)
        check_number('TLWLoss', 'loss_weight', loss_weight)
        if base == 'mse' and mse_offset == 0:
            raise OptionError("TLWLoss: option 'mse_offset' must be > 0 with base 'mse' (it divides by |e| + offset)")
        self.base, self.form, self.mse_offset, self.loss_weight = base, form, mse_offset, loss_weight

    def pixel_weights(self, w, error):
        return w / (error.abs() + self.mse_offset) if self.base == 'mse' else w

    def forward(self, pred, target, weights=None, wc=None):
        """Eq. (13): the WC-weighted pixel loss of the T samples (``form``: normalised sum or log posterior).

        Args:
            pred (Tensor): (N, C, H, W) SR output.
            target (Tensor): (N, C, H, W) ground truth.
            weights (Tensor): (T, N, C, H, W) sampled loss weights (detached inside).
            wc (Tensor): (T, N) their criteria (detached inside).
        """
        if weights is None or wc is None:
            raise ValueError('TLWLoss needs the sampled weights and their criteria, which TLWModel provides: '
                             'use it as train.pixel_opt of model_type: TLWModel')
        check_inputs('TLWLoss', pred, target)
        if weights.dim() != pred.dim() + 1 or weights.shape[1:] != pred.shape or wc.shape != weights.shape[:2]:
            raise ValueError(f'TLWLoss: expected weights (T, *{tuple(pred.shape)}) and wc (T, {pred.shape[0]}), got '
                             f'{tuple(weights.shape)} and {tuple(wc.shape)}')
        pred32, target32 = at_least_float32(pred), at_least_float32(target)
        weights, wc = weights.detach().to(pred32.dtype), wc.detach().to(pred32.dtype)
        if (wc <= 0).any():  # (a non-finite wc from a non-finite pred gives a non-finite loss, as pred would)
            raise ValueError('TLWLoss: the weight criteria wc must be > 0')
        with torch.autocast(device_type=pred.device.type, enabled=False):
            if self.form == 'weighted_sum':
                share = (wc / wc.sum(dim=0)).view(*wc.shape, 1, 1, 1)
                combined = (share * weights).sum(dim=0)  # eq. (11), last line: sum_i WC_i w_i, normalised
                total = weighted_error_sum(pred32, target32, self.base,
                                           lambda _target, error, _sign: self.pixel_weights(combined, error))
                loss = total / pred.numel()
            else:
                error = pred32 - target32
                err = error.abs() if self.base == 'l1' else error.square()
                expected = (self.pixel_weights(weights, error.detach()) * err).mean(dim=(-3, -2, -1))  # (T, N)
                log_posterior = torch.logsumexp(wc.log() - expected, dim=0) - wc.sum(dim=0).log()
                loss = -log_posterior.mean()
        return self.loss_weight * loss
