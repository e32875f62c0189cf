"""The optimiser step every model shares: mixed precision ``train.amp``, ``train.grad_clip`` and the
non-finite policy ``train.non_finite``.

    train:
      amp: {dtype: bfloat16}        # or float16 (with a GradScaler per optimiser); absent = float32
      grad_clip: {max_norm: 0.1}    # clip_grad_norm_ over the parameters of each optimiser; absent = off
      non_finite: {max_skips: 10}   # absent = {max_skips: 0}: the first non-finite step stops training
      channels_last: true           # the trained networks and the 4-D batches in channels-last memory layout
      compile: true                 # or {mode: max-autotune, backend: inductor, dynamic: ...}: torch.compile
      deterministic: true           # deterministic algorithms (exact CUDA runs and resumes); absent = BasicSR's speed
      loss_spike: {action: rewind}  # a finite blow-up of the loss: warn, stop or rewind (losses_plugin.models.loss_spike)

``channels_last`` lays out each network BasicSR places with ``model_to_device`` (net_g, net_w, ...; not the EMA
copy) before DDP or DataParallel wraps it, since DDP's gradient buckets take the layout the parameters have
then. It is a 4-D layout: 5-D weights (Conv3d) and 5-D batches (video) keep theirs, with one log line.

``compile`` wraps each trained network in ``torch.compile``; where compiling fails, dynamo falls back
to running the network as written (a warning says so). Checkpoints hold the plain network's keys (no
``_orig_mod.``), so they load with or without ``compile``.

``deterministic`` makes a CUDA run repeat to the bit and a resumed one continue exactly, as CPU runs do
anyway: BasicSR turns ``cudnn.benchmark`` on (it times several convolution algorithms and keeps the fastest,
which may differ between runs), and some CUDA backward passes add with atomics in an unfixed order. It turns
benchmarking off, asks cuDNN and torch for deterministic algorithms (torch warns, once per operation, about one
that has none) and sets ``CUBLAS_WORKSPACE_CONFIG`` for cuBLAS. On a GPU that costs speed (the fastest
algorithm is not always a deterministic one); on the CPU it changes nothing measurable.

Under ``amp`` the networks' forward passes run under autocast (:meth:`StepGuard.autocast`); losses are
computed in float32 from the float32 copy of the output (``at_least_float32``); weights, optimiser
states and checkpoints stay float32. With float16 a GradScaler scales each loss; a step whose scaled
gradients overflow is the scaler's to skip (it lowers the scale) and is not counted below.

A step whose loss terms or gradients hold NaN/Inf is skipped: the optimiser does not step, the
scheduler step of this iteration is taken back, the model's EMA is not updated, and a warning names
the loss terms and the iteration. After more than ``max_skips`` skipped steps in a row training stops
with :class:`NonFiniteTraining`. Under DDP every rank takes the same decision (the gradients are
already averaged; the loss check is agreed by one all-reduce), so parameters stay identical.
"""
import contextlib
import itertools
import os

import torch
from basicsr.utils import get_root_logger

from losses_plugin.checks import OptionError, is_number
from losses_plugin.distributed import any_rank_each
from losses_plugin.losses.pixel_loss_base import at_least_float32
from losses_plugin.models.loss_spike import LossSpikePolicy
from losses_plugin.models.sharded_validation import model_networks
from losses_plugin.models.training_stopped import TrainingStopped


class NonFiniteTraining(TrainingStopped):
    """Too many optimiser steps in a row had a non-finite loss or gradient."""


def _read_grad_clip(opt):
    if opt is None:
        return None
    if not isinstance(opt, dict) or set(opt) - {'max_norm', 'norm_type'} or 'max_norm' not in opt:
        raise OptionError(f'train.grad_clip: expected {{max_norm: <number > 0>[, norm_type: 2]}}, got {opt!r}')
    max_norm, norm_type = opt['max_norm'], opt.get('norm_type', 2.0)
    for key, value in (('max_norm', max_norm), ('norm_type', norm_type)):
        if not is_number(value) or value <= 0:
            raise OptionError(f'train.grad_clip.{key}: expected a number > 0, got {value!r}')
    return float(max_norm), float(norm_type)


AMP_DTYPES = {'bfloat16': torch.bfloat16, 'float16': torch.float16}


def _read_amp(opt):
    if opt is None:
        return None
    if not isinstance(opt, dict) or set(opt) != {'dtype'} or opt['dtype'] not in AMP_DTYPES:
        raise OptionError(f'train.amp: expected {{dtype: bfloat16}} or {{dtype: float16}}, got {opt!r}')
    return AMP_DTYPES[opt['dtype']]


COMPILE_KEYS = ('mode', 'backend', 'dynamic', 'fullgraph')


def _read_compile(opt):
    if opt is None or opt is False:
        return None
    if opt is True:
        return {}
    if not isinstance(opt, dict) or set(opt) - set(COMPILE_KEYS):
        raise OptionError(f"train.compile: expected true, false or {{{', '.join(COMPILE_KEYS)}}} (torch.compile's "
                          f'arguments), got {opt!r}')
    return dict(opt)


def _read_flag(key, value):
    if value is not None and not isinstance(value, bool):
        raise OptionError(f'train.{key}: expected true or false, got {value!r}')
    return bool(value)


def channels_last_requested(opt):
    """``train.channels_last`` of a training run's options (False when testing)."""
    if not opt.get('is_train'):
        return False
    return _read_flag('channels_last', (opt.get('train') or {}).get('channels_last'))


def to_channels_last(net):
    """Lays out ``net``'s 4-D parameters and buffers channels-last, in place (the same tensors, so optimisers keep
    them). torch's ``net.to(memory_format=torch.channels_last)`` refuses 5-D ones; they keep their layout here,
    and one log line says how many did."""
    kept = 0
    for tensor in itertools.chain(net.parameters(), net.buffers()):
        if tensor.dim() == 4:
            tensor.data = tensor.data.contiguous(memory_format=torch.channels_last)
        kept += tensor.dim() == 5
    if kept:
        get_root_logger().info(f'train.channels_last: {type(net).__name__} keeps the layout of its {kept} 5-D '
                               'weights (Conv3d); channels_last is a 4-D layout')


def use_deterministic_algorithms():
    """``train.deterministic``: cuDNN without benchmarking, deterministic algorithms where torch has them."""
    os.environ.setdefault('CUBLAS_WORKSPACE_CONFIG', ':4096:8')  # read when cuBLAS starts: before any matmul
    torch.backends.cudnn.benchmark = False
    torch.backends.cudnn.deterministic = True
    torch.use_deterministic_algorithms(True, warn_only=True)
    get_root_logger().info('train.deterministic: cudnn.benchmark off, deterministic algorithms on (torch warns about '
                           'an operation that has none)')


def _read_max_skips(opt):
    if opt is None:
        return 0
    if not isinstance(opt, dict) or set(opt) != {'max_skips'}:
        raise OptionError(f'train.non_finite: expected {{max_skips: <integer >= 0>}}, got {opt!r}')
    max_skips = opt['max_skips']
    if isinstance(max_skips, bool) or not isinstance(max_skips, int) or max_skips < 0:
        raise OptionError(f'train.non_finite.max_skips: expected an integer >= 0, got {max_skips!r}')
    return max_skips


def _gradient_norm(params, grad_clip):
    grads = [p.grad for p in params if p.grad is not None]
    if not grads:
        return None
    if grad_clip is not None:
        return torch.nn.utils.clip_grad_norm_(params, grad_clip[0], norm_type=grad_clip[1])
    return torch.nn.utils.get_total_norm(grads)


class ReplicaAutocastDtype:
    """Forward pre-hook on a DataParallel's module: its replicas run in ``dtype`` under autocast.

    torch's ``parallel_apply`` runs each replica in a new thread and re-enters autocast there with ``enabled``
    only; the autocast dtype is thread-local and a new thread's is the device type's default (float16 on CUDA),
    so bfloat16 training would run its replicas in float16, without a GradScaler. DataParallel's replicas share
    their module's hooks; this one sets the dtype before the replica's first operation.

    Args:
        device_type (str): the networks' device type ('cuda').
        dtype (torch.dtype): ``train.amp``'s dtype.
    """

    def __init__(self, device_type: str, dtype: torch.dtype):
        self.device_type, self.dtype = device_type, dtype

    def __call__(self, module, args):
        if torch.is_autocast_enabled(self.device_type):
            torch.set_autocast_dtype(self.device_type, self.dtype)


class StepGuard:
    """Backward, gradient check and clipping, and the optimiser step, for one model.

    Args:
        model (SRModel): a BasicSR model (reads ``opt['train']``, ``optimizers``, ``schedulers``, ``device``).
    """

    def __init__(self, model):
        train_opt = model.opt.get('train') or {}
        self.model = model
        self.grad_clip = _read_grad_clip(train_opt.get('grad_clip'))
        self.max_skips = _read_max_skips(train_opt.get('non_finite'))
        self.amp_dtype = _read_amp(train_opt.get('amp'))
        self.channels_last = channels_last_requested(model.opt)
        self.kept_batch_layout = False  # logged once: a 5-D batch stays as it is
        self.compile = _read_compile(train_opt.get('compile'))
        if _read_flag('deterministic', train_opt.get('deterministic')):
            use_deterministic_algorithms()  # after BasicSR's training loop turned cudnn.benchmark on
        self.skips_in_a_row = {}
        self.scalers = {}  # one GradScaler per optimised network under float16
        self.scheduler_states = None
        self.loss_spike = LossSpikePolicy.from_options(model, train_opt.get('loss_spike'))

    def autocast(self):
        """Autocast for the networks' forward passes under ``train.amp`` (a no-op without it)."""
        return torch.autocast(self.model.device.type, dtype=self.amp_dtype or torch.float32,
                              enabled=self.amp_dtype is not None)

    def prepare_networks(self):
        """``compile``, and ``amp``'s dtype in DataParallel's replicas, for every network the model optimises (after
        BasicSR's DDP or DataParallel wrapping; ``channels_last`` came before it, in ``model_to_device``)."""
        trained = {id(p) for optimizer in self.model.optimizers for group in optimizer.param_groups
                   for p in group['params']}
        for name, net in model_networks(self.model).items():
            if not any(id(p) in trained for p in net.parameters()):
                continue
            if self.amp_dtype is not None and isinstance(net, torch.nn.DataParallel):
                net.module.register_forward_pre_hook(ReplicaAutocastDtype(self.model.device.type, self.amp_dtype))
            if self.compile is not None:
                import torch._dynamo as dynamo

                dynamo.config.suppress_errors = True  # a network that fails to compile runs as written
                get_root_logger().info(f'{name}: torch.compile({self.compile or ""}); if compiling fails, '
                                       'the network runs uncompiled and torch logs why')
                setattr(self.model, name, torch.compile(net, **self.compile))

    def memory_format(self, tensor):
        """A batch tensor in the networks' memory layout (4-D batches; a 5-D one keeps its layout)."""
        if not self.channels_last:
            return tensor
        if tensor.dim() == 4:
            return tensor.contiguous(memory_format=torch.channels_last)
        if not self.kept_batch_layout:
            self.kept_batch_layout = True
            get_root_logger().info(f'train.channels_last: the {tensor.dim()}-D batches keep their layout; '
                                   'channels_last is a 4-D layout')
        return tensor

    def _scaler(self, network):
        if self.amp_dtype is not torch.float16:
            return None
        if network not in self.scalers:
            self.scalers[network] = torch.amp.GradScaler(self.model.device.type)
        return self.scalers[network]

    def state_dict(self):
        """What a training state keeps: the skip counts, each GradScaler's scale, the loss-spike policy's state."""
        state = {'skips_in_a_row': dict(self.skips_in_a_row),
                 'scalers': {network: scaler.state_dict() for network, scaler in self.scalers.items()}}
        if self.loss_spike is not None:
            state['loss_spike'] = self.loss_spike.state_dict()
        return state

    def load_state_dict(self, state):
        self.skips_in_a_row = dict(state.get('skips_in_a_row', {}))
        if self.loss_spike is not None and 'loss_spike' in state:
            self.loss_spike.load_state_dict(state['loss_spike'])
        for network, scaler_state in state.get('scalers', {}).items():
            scaler = self._scaler(network)
            if scaler is not None:
                scaler.load_state_dict(scaler_state)

    def before_schedulers_step(self, current_iter):
        """Called before the iteration's scheduler step: the loss-spike policy looks at the last iteration (and may
        rewind it or stop), then what a skipped step restores is recorded."""
        if self.loss_spike is not None:
            self.loss_spike.observe(current_iter)
        self.scheduler_states = [(s.state_dict(), [group['lr'] for group in o.param_groups])
                                 for o, s in zip(self.model.optimizers, self.model.schedulers)]

    def step(self, network, optimizer, loss, terms, current_iter):
        """``loss.backward()`` then ``optimizer.step()`` unless a term or gradient is non-finite.

        Args:
            network (str): what ``optimizer`` trains, for messages ('net_g').
            optimizer (Optimizer): the optimiser of that network; its gradients are cleared by the caller.
            loss (Tensor): the scalar to minimise.
            terms (dict[str, Tensor]): the logged loss terms (named in the warning when non-finite).
            current_iter (int): for messages.
        Returns:
            bool: whether the optimiser stepped (False: skipped; the caller leaves its EMA alone).
        """
        scaler = self._scaler(network)
        # also with a non-finite loss: under DDP every rank must join the gradient all-reduce
        (scaler.scale(loss) if scaler else loss).backward()
        if scaler:
            scaler.unscale_(optimizer)
        bad_here = [name for name, value in {'total': loss, **terms}.items()
                    if torch.is_tensor(value) and not bool(torch.isfinite(value.detach()).all())]
        norm = _gradient_norm([p for group in optimizer.param_groups for p in group['params']], self.grad_clip)
        bad_terms, bad_gradient = any_rank_each([bad_here, norm is not None and not bool(torch.isfinite(norm))],
                                                self.model.device)
        overflow = False
        with self._learning_rates(optimizer, current_iter):
            if scaler:
                if not bad_terms:
                    scaler.step(optimizer)  # skips the step itself when the scaled gradients overflowed
                scaler.update()  # (and lowers the scale then)
                overflow = bad_gradient and not bad_terms and scaler.get_scale() >= 1  # the scaler's business
            elif not (bad_terms or bad_gradient):
                optimizer.step()
        if not (bad_terms or bad_gradient):
            self.skips_in_a_row[network] = 0
            return True
        optimizer.zero_grad(set_to_none=True)
        self._undo_scheduler_step(optimizer)
        if not overflow:
            self._count_skip(network, current_iter, self._reason(network, bad_here, bad_terms, loss, terms))
        return False

    def _learning_rates(self, optimizer, current_iter):
        """The learning rates a step uses: lowered for a while after a loss-spike rewind (train.loss_spike)."""
        if self.loss_spike is None:
            return contextlib.nullcontext()
        return self.loss_spike.learning_rates(optimizer, current_iter)

    @staticmethod
    def _reason(network, bad_here, bad_terms, loss, terms):
        if bad_here:
            return 'non-finite ' + ', '.join(f'{name}={float(terms.get(name, loss).detach()):g}' for name in bad_here)
        if bad_terms:
            return 'a non-finite loss on another rank'
        return f'non-finite gradient of {network} (the loss terms are finite)'

    def _count_skip(self, network, current_iter, reason):
        skips = self.skips_in_a_row[network] = self.skips_in_a_row.get(network, 0) + 1
        message = (f'iteration {current_iter}: skipped the {network} step: {reason}; {skips} skipped in a row '
                   f'(train.non_finite.max_skips: {self.max_skips})')
        if skips > self.max_skips:
            raise NonFiniteTraining(f'{message}. Training stopped; the last checkpoint holds finite weights and '
                                    'resumes. Lower the learning rate, set train.grad_clip, or raise '
                                    'train.non_finite.max_skips.')
        get_root_logger().warning(message)

    def _undo_scheduler_step(self, optimizer):
        if self.scheduler_states is None:
            return
        for (state, lrs), o, s in zip(self.scheduler_states, self.model.optimizers, self.model.schedulers):
            if o is optimizer:
                s.load_state_dict(state)
                for group, lr in zip(o.param_groups, lrs):
                    group['lr'] = lr


def check_finite_weights(net, label, current_iter):
    """Refuses to save a network holding NaN/Inf (the previous checkpoint then stays the last good one)."""
    for name, tensor in net.state_dict().items():
        if tensor.is_floating_point() and not bool(torch.isfinite(tensor).all()):
            raise NonFiniteTraining(f'{label} holds non-finite values in {name} at iteration {current_iter}: not '
                                    'saved, so the previous checkpoint stays the last good one')


def sr_model_optimize_parameters(model, current_iter):
    """BasicSR's ``SRModel.optimize_parameters`` (pixel and perceptual losses on net_g) through the guard."""
    model.optimizer_g.zero_grad()
    with model.step_guard.autocast():
        model.output = at_least_float32(model.net_g(model.lq))
    l_total = 0
    loss_dict = {}
    if model.cri_pix:
        loss_dict['l_pix'] = model.cri_pix(model.output, model.gt)
    if model.cri_perceptual:
        l_percep, l_style = model.cri_perceptual(model.output, model.gt)
        for name, value in (('l_percep', l_percep), ('l_style', l_style)):
            if value is not None:
                loss_dict[name] = value
    for value in loss_dict.values():
        l_total = l_total + value
    stepped = model.step_guard.step('net_g', model.optimizer_g, l_total, loss_dict, current_iter)
    model.log_dict = model.reduce_loss_dict(loss_dict)
    if stepped and model.ema_decay > 0:
        model.model_ema(decay=model.ema_decay)
