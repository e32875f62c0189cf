"""TLWModel: SR training with trainable loss weights (Algorithm 1 of ``trainable_loss_weights_tlw.txt``).

Each iteration (x = gt, y = lq):
    x_hat = f_theta(y)                                    (one forward, its graph kept for the SR step)
    w ~ MVB(g_phi(x, x_hat)), one sample; L_phi = -log WC(w)   (eq. 4, 8-9) -> one step of net_w
    w_1..w_T ~ MVB(g_phi(x, x_hat)) from the updated phi, WC_i of each (no gradient)
    L_theta = TLWLoss(x_hat, x, w_i, WC_i)                 (eq. 11-13)  -> one step of net_g
Algorithm 1 runs the SR network twice (without, then with gradient); theta does not change between
the two, so one forward with gradient gives the same x_hat for both uses.

The ratio k of the weight sum to the image size grows per epoch: ``k = k_span*(1 - exp(-epoch/tau)) + k0``.
The epoch is derived from the iteration and the epoch length of the training set (as BasicSR's loader
makes it), so BasicSR's own ``train_pipeline`` and ``basicsr train`` follow the same schedule.
"""
import math
from collections import OrderedDict

import torch
from basicsr.archs import build_network
from basicsr.data import build_dataset
from basicsr.models.lr_scheduler import CosineAnnealingRestartLR, MultiStepRestartLR
from basicsr.models.sr_model import SRModel
from basicsr.utils.registry import MODEL_REGISTRY

from losses_plugin.checks import OptionError
from losses_plugin.losses.pixel_loss_base import at_least_float32
from losses_plugin.losses.tlw_judge import build_judge
from losses_plugin.losses.tlw_loss import WC_EPS, TLWLoss, weight_criterion

K_SCHEDULE = {'k0': 0.3, 'k_span': 0.6, 'tau': 200}  # the paper's (the reference code uses tau 100)
SCHEDULERS = {'MultiStepLR': MultiStepRestartLR, 'MultiStepRestartLR': MultiStepRestartLR,
              'CosineAnnealingRestartLR': CosineAnnealingRestartLR}


def k_at_epoch(epoch, k0=0.3, k_span=0.6, tau=200):
    """The TLW paper's k schedule (section IV-A)."""
    return k_span * (1 - math.exp(-epoch / tau)) + k0


def iterations_per_epoch(opt):
    """Iterations in one epoch of ``datasets.train``, as BasicSR's loader makes them: its
    ``EnlargedSampler`` gives each rank ``ceil(len * enlarge_ratio / world_size)`` samples, in full batches of
    ``batch_size_per_gpu`` per rank under a launcher, and of ``batch_size_per_gpu * num_gpu`` without one
    (one process feeding DataParallel)."""
    dataset_opt = (opt.get('datasets') or {}).get('train')
    if dataset_opt is None:
        raise OptionError('TLWModel: the k schedule counts epochs of datasets.train, which the options lack; '
                          'set train.tlw.iters_per_epoch instead')
    samples = math.ceil(len(build_dataset(dataset_opt)) * dataset_opt.get('dataset_enlarge_ratio', 1) /
                        opt['world_size'])
    batch_size = dataset_opt['batch_size_per_gpu']
    if not opt['dist']:
        batch_size *= max(opt['num_gpu'], 1)  # as basicsr.data.build_dataloader (num_gpu 0: the CPU, one batch)
    return max(samples // batch_size, 1)


@MODEL_REGISTRY.register()
class TLWModel(SRModel):
    """SRModel plus the weighting network ``network_w`` (e.g. TLWWeightingNet) trained by EM.

    Options beyond SRModel's (under ``train``):
        optim_w (dict): the weighting network's optimiser (required).
        scheduler_w (dict, optional): its scheduler; default: a copy of ``scheduler``.
        pixel_opt: must be a TLWLoss.
        tlw (dict, optional): ``judge`` ({type: lpips|ms_ssim|ssim|l1, ...}; default ms_ssim),
            ``k0``, ``k_span``, ``tau`` (the k schedule; defaults 0.3, 0.6, 200), ``wc_eps`` (1e-3),
            ``iters_per_epoch`` (the epoch length k counts in; default: that of ``datasets.train``).
    ``path.pretrain_network_w`` loads a weighting network; ``net_w`` is saved with every checkpoint.
    """

    TRAIN_KEYS = ('optim_w', 'scheduler_w', 'tlw')  # beyond SRModel's; losses_plugin.strict_options checks them

    def init_training_settings(self):
        train_opt = self.opt['train']
        if 'network_w' not in self.opt:
            raise OptionError('TLWModel: the option file needs network_w (e.g. {type: TLWWeightingNet})')
        if 'optim_w' not in train_opt:
            raise OptionError('TLWModel: train.optim_w (the weighting network\'s optimiser) is missing')
        tlw_opt = dict(train_opt.get('tlw') or {})
        unknown = set(tlw_opt) - {'judge', 'wc_eps', 'iters_per_epoch', *K_SCHEDULE}
        if unknown:
            raise OptionError(f"TLWModel: unknown train.tlw option(s) {', '.join(sorted(unknown))}; known: judge, "
                              f"wc_eps, iters_per_epoch, {', '.join(K_SCHEDULE)}")
        self.k_schedule = {key: tlw_opt.get(key, default) for key, default in K_SCHEDULE.items()}
        self.wc_eps = tlw_opt.get('wc_eps', WC_EPS)
        self.judge = build_judge(tlw_opt.get('judge')).to(self.device)
        self.iters_per_epoch = (tlw_opt['iters_per_epoch'] if 'iters_per_epoch' in tlw_opt
                                else iterations_per_epoch(self.opt))
        if isinstance(self.iters_per_epoch, bool) or not isinstance(self.iters_per_epoch, int) or self.iters_per_epoch < 1:
            raise OptionError(f'TLWModel: train.tlw.iters_per_epoch must be an integer >= 1, got {self.iters_per_epoch!r}')

        self.net_w = self.model_to_device(build_network(self.opt['network_w']))
        self.print_network(self.net_w)
        load_path = self.opt['path'].get('pretrain_network_w')
        if load_path is not None:
            self.load_network(self.net_w, load_path, self.opt['path'].get('strict_load_w', True),
                              self.opt['path'].get('param_key_w', 'params'))
        self.net_w.train()
        super().init_training_settings()
        if not isinstance(self.cri_pix, TLWLoss):
            raise OptionError(f'TLWModel: train.pixel_opt must be a TLWLoss, got {type(self.cri_pix).__name__}')

    def setup_optimizers(self):
        super().setup_optimizers()
        optim_opt = dict(self.opt['train']['optim_w'])
        optim_type = optim_opt.pop('type')
        self.optimizer_w = self.get_optimizer(optim_type, list(self.net_w.parameters()), **optim_opt)
        self.optimizers.append(self.optimizer_w)

    def setup_schedulers(self):
        """``train.scheduler`` for net_g; ``train.scheduler_w`` (default: the same) for net_w."""
        scheduler_w = dict(self.opt['train'].get('scheduler_w') or self.opt['train']['scheduler'])
        super().setup_schedulers()  # one scheduler per optimiser, from train.scheduler
        scheduler_type = scheduler_w.pop('type')
        if scheduler_type not in SCHEDULERS:
            raise OptionError(f"TLWModel: train.scheduler_w.type must be one of {', '.join(SCHEDULERS)}, "
                             f'got {scheduler_type!r}')
        self.schedulers[-1] = SCHEDULERS[scheduler_type](self.optimizer_w, **scheduler_w)

    def optimize_parameters(self, current_iter):
        self.k = k_at_epoch((current_iter - 1) // self.iters_per_epoch, **self.k_schedule)
        net_w = self.get_bare_model(self.net_w)
        net_w.set_k(self.k)

        self.optimizer_g.zero_grad()
        with self.step_guard.autocast():
            self.output = at_least_float32(self.net_g(self.lq))
        sr = self.output.detach()

        # E-step helper: one step of the weighting network on -log WC of one sample (eq. 8-9)
        self.optimizer_w.zero_grad()
        with self.step_guard.autocast():
            mean = self.net_w(self.gt, sr)
        w = net_w.sample(mean, num_samples=1)[0]
        with torch.no_grad():  # the judge's gt side, shared by the E and M steps
            reference = self.judge.reference(self.gt)
        wc = weight_criterion(self.judge, w, sr, self.gt, self.wc_eps, reference)
        l_w = -torch.log(wc).mean()
        self.step_guard.step('net_w', self.optimizer_w, l_w, {'l_w': l_w}, current_iter)

        # M-step: T samples from the updated weighting network weight the SR loss (eq. 11-13)
        with torch.no_grad():
            with self.step_guard.autocast():
                self.weight_mean = self.net_w(self.gt, sr)
            self.weight_samples = net_w.sample(self.weight_mean)
            wc_samples = weight_criterion(self.judge, self.weight_samples, sr, self.gt, self.wc_eps, reference)
        l_pix = self.cri_pix(self.output, self.gt, self.weight_samples, wc_samples)
        stepped = self.step_guard.step('net_g', self.optimizer_g, l_pix, {'l_pix': l_pix}, current_iter)

        loss_dict = OrderedDict(l_pix=l_pix, l_w=l_w, wc=wc.mean(), k=torch.tensor(self.k, device=l_pix.device))
        self.log_dict = self.reduce_loss_dict(loss_dict)
        if stepped and self.ema_decay > 0:
            self.model_ema(decay=self.ema_decay)

    def weight_maps(self):
        """For TensorBoard (Fig. 5 of the paper): the Bernoulli means and one sample of the last iteration."""
        if getattr(self, 'weight_mean', None) is None:
            return {}
        return {'tlw_mean': self.weight_mean, 'tlw_sample': self.weight_samples[0]}

    def save(self, epoch, current_iter):
        self.save_network(self.net_w, 'net_w', current_iter)
        super().save(epoch, current_iter)
