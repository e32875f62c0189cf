"""UDLModel: the uncertainty-driven loss baseline (Ning et al. 2021) in its two stages.

- stage ``esu`` (``train.pixel_opt: {type: UDLLoss, stage: esu}``): net_g is an UncertaintySRNet;
  it learns the SR image and the log-uncertainty s together (eq. 2).
- stage ``udl`` (``stage: udl``): net_g is any SR network; the stage-1 network, loaded from
  ``train.uncertainty_estimator`` and frozen, gives s for each batch, and the loss weights the
  error by ``s - min(s) + 1`` (eq. 3).
Validation, testing, EMA, checkpoints and DDP are SRModel's (an UncertaintySRNet's plain forward
returns the SR image only).
"""
import copy
import os
from collections import OrderedDict

import torch
from basicsr.archs import build_network
from basicsr.models.sr_model import SRModel
from basicsr.utils.registry import MODEL_REGISTRY

from losses_plugin.checks import OptionError, check_existing_file
from losses_plugin.losses.pixel_loss_base import at_least_float32
from losses_plugin.losses.udl_loss import UDLLoss, udl_weights


@MODEL_REGISTRY.register()
class UDLModel(SRModel):
    """Options beyond SRModel's (under ``train``):
        pixel_opt: a UDLLoss; its ``stage`` selects the stage.
        uncertainty_estimator (dict, stage udl): ``network`` (the stage-1 network_g options),
            ``pretrain_path`` (its checkpoint, e.g. experiments/<stage 1>/models/net_g_latest.pth),
            ``param_key`` (default 'params'). Frozen; not saved with checkpoints.
    """

    TRAIN_KEYS = ('uncertainty_estimator.network', 'uncertainty_estimator.pretrain_path',
                  'uncertainty_estimator.param_key')  # beyond SRModel's; losses_plugin.strict_options checks them

    def init_training_settings(self):
        super().init_training_settings()
        if not isinstance(self.cri_pix, UDLLoss):
            raise OptionError(f'UDLModel: train.pixel_opt must be a UDLLoss, got {type(self.cri_pix).__name__}')
        self.stage = self.cri_pix.stage
        if self.stage == 'udl':
            self.estimator = self.build_estimator(self.opt['train'].get('uncertainty_estimator'))

    def build_estimator(self, opt):
        if not isinstance(opt, dict) or 'network' not in opt or 'pretrain_path' not in opt:
            raise OptionError('UDLModel: stage udl needs train.uncertainty_estimator: {network: <stage-1 network_g>, '
                             'pretrain_path: <stage-1 net_g checkpoint>}')
        check_existing_file('train.uncertainty_estimator.pretrain_path', opt['pretrain_path'],
                            'train the UDL stage esu first (its net_g checkpoint goes here)')
        estimator = build_network(copy.deepcopy(opt['network']))
        # BasicSR's DataParallel for num_gpu > 1 without a launcher spreads its batch too; under a launcher each
        # rank runs it on its own batch (DDP refuses a network that trains nothing)
        estimator = estimator.to(self.device) if self.opt['dist'] else self.model_to_device(estimator)
        self.load_network(estimator, os.path.expanduser(opt['pretrain_path']), True, opt.get('param_key', 'params'))
        return estimator.requires_grad_(False).eval()

    def optimize_parameters(self, current_iter):
        self.optimizer_g.zero_grad()
        with self.step_guard.autocast():
            if self.stage == 'esu':
                self.output, self.uncertainty = map(at_least_float32, self.net_g(self.lq, return_uncertainty=True))
            else:
                self.output = at_least_float32(self.net_g(self.lq))
                with torch.no_grad():
                    self.uncertainty = at_least_float32(self.estimator(self.lq, return_uncertainty=True)[1])
        l_pix = self.cri_pix(self.output, self.gt, self.uncertainty)
        stepped = self.step_guard.step('net_g', self.optimizer_g, l_pix, {'l_pix': l_pix}, current_iter)

        loss_dict = OrderedDict(l_pix=l_pix, s=self.uncertainty.detach().mean())
        self.log_dict = self.reduce_loss_dict(loss_dict)
        if stepped and self.ema_decay > 0:
            self.model_ema(decay=self.ema_decay)

    def weight_maps(self):
        """For TensorBoard: the uncertainty exp(s) and, in stage udl, the loss weights of the last batch."""
        if getattr(self, 'uncertainty', None) is None:
            return {}
        maps = {'udl_uncertainty': torch.exp(self.uncertainty.detach())}
        if self.stage == 'udl':
            maps['udl_weights'] = udl_weights(self.uncertainty)
        return maps
