"""FGDModel: SR training with the fine-grained dynamic loss (``fine_grained_dynamic_loss.txt``).

net_g is an FGDNet; training uses its probability-mixed output and the loss's terms (logged as
``l_r``, ``l_c1``, ``l_c2``, ``l_avg``, ``l_sr``) and, with a Class-Module, how it uses the anchor areas:
``class_frac_<a>`` for each area size a, the fraction of sub-images (Class-Module regions) whose most
probable area is a, over the iterations since the previous log line. Validation and testing are
SRModel's, through FGDNet's plain forward (the most probable anchor area), so tiling-free ``test()``,
EMA, checkpoints and DDP are BasicSR's own.
"""
from collections import OrderedDict

import torch
from basicsr.models.sr_model import SRModel
from basicsr.utils.registry import MODEL_REGISTRY

from losses_plugin.checks import OptionError
from losses_plugin.fgd_bins import anchor_of
from losses_plugin.losses.fgd_loss import FineGrainedDynamicLoss
from losses_plugin.losses.pixel_loss_base import at_least_float32


def class_fractions(probs):
    """(N, M, h, w) area-class probabilities -> (M,) the fraction of the N*h*w regions whose most probable
    class is each class (sums to 1)."""
    choices = probs.detach().argmax(dim=1).flatten()
    return torch.bincount(choices, minlength=probs.shape[1]).to(probs.dtype) / choices.numel()


@MODEL_REGISTRY.register()
class FGDModel(SRModel):
    TRAIN_KEYS = ()  # none beyond SRModel's (losses_plugin.strict_options)

    def init_training_settings(self):
        super().init_training_settings()
        if not isinstance(self.cri_pix, FineGrainedDynamicLoss):
            raise OptionError('FGDModel: train.pixel_opt must be a FineGrainedDynamicLoss, got '
                             f'{type(self.cri_pix).__name__}')
        net = self.get_bare_model(self.net_g)
        if not hasattr(net, 'num_bins') or not hasattr(net, 'area_sizes'):
            raise OptionError(f'FGDModel: network_g must be an FGDNet, got {type(net).__name__}')
        self.num_bins, self.area_sizes = net.num_bins, net.area_sizes
        # class counts since the last log line; BasicSR logs after the step when current_iter % print_freq == 0
        self.print_freq = self.opt.get('logger', {}).get('print_freq', 1) or 1
        self.class_counts = None

    def optimize_parameters(self, current_iter):
        self.optimizer_g.zero_grad()
        with self.step_guard.autocast():
            results = self.net_g(self.lq, return_all=True)
        out, logits, sr = (at_least_float32(results[k]) for k in ('out', 'logits', 'sr'))
        probs = None if results['probs'] is None else at_least_float32(results['probs'])
        self.output = out
        terms = self.cri_pix.terms(out, self.gt, logits, probs, sr)
        l_total = self.cri_pix.total(terms)
        stepped = self.step_guard.step('net_g', self.optimizer_g, l_total, terms, current_iter)
        self.last_maps = {k: results[k].detach() for k in ('bins', 'areas')}
        self.log_dict = self.reduce_loss_dict(OrderedDict(l_total=l_total, **terms,
                                                          **self._class_usage(probs, current_iter)))
        if stepped and self.ema_decay > 0:
            self.model_ema(decay=self.ema_decay)

    def _class_usage(self, probs, current_iter):
        """``{'class_frac_<a>': fraction}`` over the regions seen since the previous log line ({} without a
        Class-Module)."""
        if probs is None:
            return {}
        regions = probs.shape[0] * probs.shape[2] * probs.shape[3]
        counts = class_fractions(probs) * regions
        self.class_counts = counts if self.class_counts is None else self.class_counts + counts
        fractions = self.class_counts / self.class_counts.sum()
        if current_iter % self.print_freq == 0:
            self.class_counts = None
        return {f'class_frac_{a}': fractions[i] for i, a in enumerate(self.area_sizes)}

    def weight_maps(self):
        """For TensorBoard: the predicted bin (its anchor value), the chosen anchor-area class, |error|."""
        if getattr(self, 'last_maps', None) is None:
            return {}
        return {'fgd_bins': anchor_of(self.last_maps['bins'], self.num_bins),
                'fgd_areas': self.last_maps['areas'][:, None].float(),
                'fgd_error': (self.output.detach() - self.gt).abs()}
