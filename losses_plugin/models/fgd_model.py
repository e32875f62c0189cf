"""FGDModel: SR training with the fine-grained dynamic loss (``fine_grained_dynamic_loss.txt``).

net_g is an FGDNet; training uses its probability-mixed output and the loss's terms (logged as
``l_r``, ``l_c1``, ``l_c2``, ``l_avg``); validation and testing are SRModel's, through FGDNet's plain
forward (the most probable anchor area), so tiling-free ``test()``, EMA, checkpoints and DDP are
BasicSR's own.
"""
from collections import OrderedDict

from basicsr.models.sr_model import SRModel
from basicsr.utils.registry import MODEL_REGISTRY

from losses_plugin.archs.fgd_arch import anchor_of
from losses_plugin.losses.fgd_loss import FineGrainedDynamicLoss


@MODEL_REGISTRY.register()
class FGDModel(SRModel):

    def init_training_settings(self):
        super().init_training_settings()
        if not isinstance(self.cri_pix, FineGrainedDynamicLoss):
            raise ValueError('FGDModel: train.pixel_opt must be a FineGrainedDynamicLoss, got '
                             f'{type(self.cri_pix).__name__}')
        net = self.get_bare_model(self.net_g)
        if getattr(net, 'num_bins', None) != self.cri_pix.num_bins:
            raise ValueError(f'FGDModel: network_g must be an FGDNet with num_bins = the loss\'s '
                             f'({self.cri_pix.num_bins}), got {type(net).__name__} '
                             f'with {getattr(net, "num_bins", None)}')

    def optimize_parameters(self, current_iter):
        self.optimizer_g.zero_grad()
        results = self.net_g(self.lq, return_all=True)
        self.output = results['out']
        terms = self.cri_pix.terms(results['out'], self.gt, results['logits'], results['probs'], results['sr'])
        l_total = self.cri_pix.total(terms)
        l_total.backward()
        self.optimizer_g.step()
        self.last_maps = {k: results[k].detach() for k in ('bins', 'areas')}
        self.log_dict = self.reduce_loss_dict(OrderedDict(l_total=l_total, **terms))
        if self.ema_decay > 0:
            self.model_ema(decay=self.ema_decay)

    def weight_maps(self):
        """For TensorBoard: the predicted bin (its anchor value), the chosen anchor-area class, |error|."""
        if getattr(self, 'last_maps', None) is None:
            return {}
        return {'fgd_bins': anchor_of(self.last_maps['bins'], self.cri_pix.num_bins),
                'fgd_areas': self.last_maps['areas'][:, None].float(),
                'fgd_error': (self.output.detach() - self.gt).abs()}
