"""StageSupervisedModel: every output of a multi-stage network is supervised by the ground truth, as
MPRNet is trained (Zamir et al. 2021, eq. 2; the SPLoss paper's Table 2 retrains it).

For stage outputs ``X_S`` (the network's ``forward(lq, return_stages=True)``, final first) and ground
truth Y the objective is ::

    L = sum_S  w_S * ( pixel(X_S, Y) + perceptual(X_S, Y) + edge(X_S, Y) )

with ``pixel`` = ``train.pixel_opt`` (any registered loss: BasicSR's CharbonnierLoss, L1Loss, our SPLoss,
...), ``perceptual`` = ``train.perceptual_opt`` and ``edge`` = ``train.edge_opt`` (e.g. MPRNet's EdgeLoss
with loss_weight 0.05), each optional but one of pixel or perceptual required, as in SRModel; and
``w_S`` = ``train.stage_weights`` (default 1 for every stage, MPRNet's plain sum). MPRNet's own training
is pixel = Charbonnier (eps 1e-3, i.e. BasicSR's eps 1e-6) and edge = 0.05 * EdgeLoss.

Logged: ``l_total`` (= L) and one term per loss and stage, weighted as it enters L, named by stage
number with the final stage the highest (``l_pix_stage3``, ``l_edge_stage3``, ..., ``l_pix_stage1``), so
``l_total`` is the sum of the other logged terms. ``self.output`` is the final stage, and validation,
testing, EMA and checkpoints are SRModel's through the network's plain forward (the final image).
"""
from collections import OrderedDict

import torch
from basicsr.losses import build_loss
from basicsr.models.sr_model import SRModel
from basicsr.utils.registry import MODEL_REGISTRY

from losses_plugin.checks import OptionError, is_number
from losses_plugin.losses.pixel_loss_base import at_least_float32


def read_stage_weights(value):
    """``train.stage_weights``: None (every stage 1) or a list of numbers >= 0, final stage first."""
    if value is None:
        return None
    if (not isinstance(value, (list, tuple)) or not value
            or any(not is_number(w) or w < 0 for w in value)
            or not any(value)):
        raise OptionError(f'train.stage_weights: expected a list of numbers >= 0, not all 0, one per stage output, '
                          f'final stage first, got {value!r}')
    return [float(w) for w in value]


@MODEL_REGISTRY.register()
class StageSupervisedModel(SRModel):
    """Options beyond SRModel's (under ``train``):
        edge_opt (dict, optional): a loss applied to every stage like pixel_opt (MPRNet: {type: EdgeLoss,
            loss_weight: 0.05}).
        stage_weights (list[float], optional): one weight per stage output, final stage first. Default: all 1.
    network_g must return its stage outputs for ``forward(x, return_stages=True)`` (e.g. MPRNet).
    """

    TRAIN_KEYS = ('edge_opt', 'stage_weights')  # beyond SRModel's; losses_plugin.strict_options checks them

    def init_training_settings(self):
        train_opt = self.opt['train']
        self.stage_weights = read_stage_weights(train_opt.get('stage_weights'))
        super().init_training_settings()
        self.cri_edge = build_loss(train_opt['edge_opt']).to(self.device) if train_opt.get('edge_opt') else None

    def stage_outputs(self):
        """The network's outputs for ``self.lq``, final stage first, in at least float32."""
        with self.step_guard.autocast():
            stages = self.net_g(self.lq, return_stages=True)
        if not isinstance(stages, (list, tuple)) or not all(torch.is_tensor(s) for s in stages):
            raise OptionError(f'StageSupervisedModel: network_g ({type(self.get_bare_model(self.net_g)).__name__}) '
                              'must return a list of stage outputs for forward(x, return_stages=True), got '
                              f'{type(stages).__name__}')
        if self.stage_weights is not None and len(self.stage_weights) != len(stages):
            raise OptionError(f'train.stage_weights: {len(self.stage_weights)} weights for the {len(stages)} stage '
                              'outputs of network_g (one per stage, final stage first)')
        return [at_least_float32(s) for s in stages]

    def stage_terms(self, stages, gt):
        """``{'l_<loss>_stage<k>': w_S * loss(X_S, Y)}`` for every configured loss and stage with w_S > 0."""
        terms = OrderedDict()
        for i, output in enumerate(stages):
            weight = 1.0 if self.stage_weights is None else self.stage_weights[i]
            if weight == 0:
                continue
            stage = len(stages) - i  # outputs come final stage first
            if self.cri_pix:
                terms[f'l_pix_stage{stage}'] = weight * self.cri_pix(output, gt)
            if self.cri_perceptual:
                l_percep, l_style = self.cri_perceptual(output, gt)
                for name, value in (('l_percep', l_percep), ('l_style', l_style)):
                    if value is not None:
                        terms[f'{name}_stage{stage}'] = weight * value
            if self.cri_edge:
                terms[f'l_edge_stage{stage}'] = weight * self.cri_edge(output, gt)
        return terms

    def optimize_parameters(self, current_iter):
        self.optimizer_g.zero_grad()
        stages = self.stage_outputs()
        self.output = stages[0]
        terms = self.stage_terms(stages, self.gt)
        l_total = sum(terms.values())
        stepped = self.step_guard.step('net_g', self.optimizer_g, l_total, terms, current_iter)
        self.log_dict = self.reduce_loss_dict(OrderedDict(l_total=l_total, **terms))
        if stepped and self.ema_decay > 0:
            self.model_ema(decay=self.ema_decay)
