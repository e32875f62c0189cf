"""``train.loss_spike``: a run whose loss blows up while staying finite is noticed, and rewound or stopped.

    train:
      loss_spike:
        action: rewind       # warn | stop | rewind
        key: total           # the logged loss watched: 'total' (l_total, else l_pix + l_percep + l_style) or a name
        window: 50           # iterations in the moving mean
        factor: 3.0          # a spike: the moving mean above factor x the lowest moving mean so far
        warmup: 200          # iterations before the first test (a fresh network's loss falls fast)
        snapshot_every: 50   # stop/rewind: an in-memory snapshot every N iterations
        max_rewinds: 3       # rewind: the spike after the last rewind stops training
        lr_factor: 1.0       # rewind: optimiser steps with learning rates x lr_factor ...
        lr_iters: 0          # ... for this many iterations after each rewind

A spike is the moving mean of the watched loss over ``window`` iterations rising above ``factor`` times the
lowest such mean seen since ``warmup`` (the non-finite policy of :mod:`losses_plugin.models.training_step` sees
NaN/Inf; this sees a loss that went 10x up and stayed there). The window whose mean crossed the threshold holds
the spike's start, so a rewind restores the newest snapshot taken at least ``window`` iterations before the
detection: every network (EMA and net_w included), the optimisers' states, the GradScalers and skip counts. The
batches in between are not replayed (the data stream and the iteration count go on, so the learning-rate
schedule follows the iteration as before; the optimisers keep their current learning rates), as large-model
training restarts before a spike and skips the batches that led there (PaLM, OLMo). ``stop``, and a spike after
``max_rewinds`` rewinds, restore that snapshot and stop with :class:`LossSpikeStop` (``basicsr train`` saves a
checkpoint of the restored state first, which resumes). ``warn`` logs once per spike.

The detector, the rewind count and the snapshots are part of the training state, so a resumed run decides as the
uninterrupted one would. Under DDP rank 0 (the one BasicSR's ``reduce_loss_dict`` averages the losses on) decides
and every rank acts on its decision; every rank keeps its own snapshots (identical, as the parameters are).
"""
import contextlib
import copy
import math

import torch
from basicsr.utils import get_root_logger

from losses_plugin.checks import OptionError, is_number
from losses_plugin.distributed import any_rank
from losses_plugin.models.sharded_validation import model_networks
from losses_plugin.models.training_stopped import TrainingStopped

ACTIONS = ('warn', 'stop', 'rewind')
DEFAULTS = {'action': 'rewind', 'key': 'total', 'window': 50, 'factor': 3.0, 'warmup': 200, 'snapshot_every': 50,
            'max_rewinds': 3, 'lr_factor': 1.0, 'lr_iters': 0}
TOTAL_TERMS = ('l_pix', 'l_percep', 'l_style')  # SRModel's terms, summed where a model logs no l_total


class LossSpikeStop(TrainingStopped):
    """Training stopped on a loss spike after the pre-spike state was restored; the message says why."""


def _read_options(opt):
    if opt is None:
        return None
    if not isinstance(opt, dict):
        raise OptionError(f'train.loss_spike: expected a mapping of {", ".join(DEFAULTS)}, got {opt!r}')
    unknown = sorted(set(opt) - set(DEFAULTS))
    if unknown:
        raise OptionError(f"train.loss_spike: unknown key(s) {', '.join(unknown)}; known: {', '.join(DEFAULTS)}")
    options = dict(DEFAULTS, **opt)
    if options['action'] not in ACTIONS:
        raise OptionError(f"train.loss_spike.action: expected one of {', '.join(ACTIONS)}, got {options['action']!r}")
    if not isinstance(options['key'], str):
        raise OptionError(f"train.loss_spike.key: expected a logged loss name or 'total', got {options['key']!r}")
    for key, minimum in (('window', 1), ('warmup', 0), ('snapshot_every', 1), ('max_rewinds', 0), ('lr_iters', 0)):
        value = options[key]
        if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
            raise OptionError(f'train.loss_spike.{key}: expected an integer >= {minimum}, got {value!r}')
    if not is_number(options['factor']) or options['factor'] <= 1:
        raise OptionError(f"train.loss_spike.factor: expected a number > 1, got {options['factor']!r}")
    if not is_number(options['lr_factor']) or not 0 < options['lr_factor'] <= 1:
        raise OptionError(f"train.loss_spike.lr_factor: expected a number in (0, 1], got {options['lr_factor']!r}")
    return options


def watched_loss(log, key):
    """The watched value of one iteration's log (``model.get_current_log()``), or None if it has none."""
    if key != 'total':
        return log.get(key)
    if 'l_total' in log:
        return log['l_total']
    terms = [log[name] for name in TOTAL_TERMS if name in log]
    return sum(terms) if terms else None


class SpikeDetector:
    """The moving mean of ``window`` finite values against ``factor`` x the lowest full-window mean after
    ``warmup`` iterations. :meth:`add` returns the mean when it is a spike, else None."""

    def __init__(self, window, factor, warmup):
        self.window, self.factor, self.warmup = window, factor, warmup
        self.values, self.lowest = [], None

    def add(self, current_iter, value):
        if value is None or not math.isfinite(value):
            return None  # the non-finite policy's business
        self.values = (self.values + [float(value)])[-self.window:]
        if len(self.values) < self.window or current_iter <= self.warmup:
            return None
        mean = sum(self.values) / self.window
        if self.lowest is None or mean < self.lowest:
            self.lowest = mean
        return mean if mean > self.factor * self.lowest else None

    def restart_window(self):
        """After a rewind: the window held the spike; the lowest mean stays."""
        self.values = []


def _to_cpu(value):
    """A copy of a (nested) state dict with its tensors on the CPU."""
    if torch.is_tensor(value):
        return value.detach().to('cpu', copy=True)
    if isinstance(value, dict):
        return {k: _to_cpu(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(_to_cpu(v) for v in value)
    return value


class LossSpikePolicy:
    """``train.loss_spike`` for one model. :meth:`observe` runs once per iteration, before the schedulers step
    (the step guard calls it from ``update_learning_rate``, in BasicSR's own loop too).

    Args:
        model (SRModel): a BasicSR model with a step guard.
        opt (dict): the ``train.loss_spike`` options.
    """

    def __init__(self, model, opt):
        self.model = model
        for key, value in opt.items():
            setattr(self, key, value)
        self.detector = SpikeDetector(self.window, self.factor, self.warmup)
        self.rewinds, self.warned, self.lower_lr_until = 0, False, 0
        self.snapshots = []  # [(iteration, state)], oldest first
        self.keep = -(-self.window // self.snapshot_every) + 1  # enough to reach one a window back

    @classmethod
    def from_options(cls, model, opt):
        options = _read_options(opt)
        return None if options is None else cls(model, options)

    def observe(self, current_iter):
        """Tests the previous iteration's logged loss; acts on a spike; takes a snapshot when one is due."""
        done = current_iter - 1  # the iteration the model's state and log are of
        log = getattr(self.model, 'log_dict', None) or {}
        mean = None
        if done >= 1 and self.model.opt.get('rank', 0) == 0:  # the only rank whose log holds the averaged losses
            value = watched_loss(log, self.key)
            if value is None and log:  # a key nothing logs would watch nothing, silently
                raise OptionError(f"train.loss_spike.key: {type(self.model).__name__} logs no "
                                  f"{'l_total, l_pix, l_percep or l_style' if self.key == 'total' else repr(self.key)}"
                                  f"; it logs {', '.join(log)}")
            mean = self.detector.add(done, value)
        spike = any_rank(mean is not None, self.model.device)
        if spike:
            self._act(done, mean, log)
        elif self.warned and mean is None and self.detector.lowest is not None:
            self.warned = False  # the mean is back under the threshold: warn again at the next spike
        if self.action != 'warn' and done % self.snapshot_every == 0 and not spike:
            self.snapshots = (self.snapshots + [(done, self._capture())])[-self.keep:]

    def _act(self, done, mean, log):
        lowest = self.detector.lowest
        found = (f"the moving mean of {self._key_name(log)} over {self.window} iterations, {self._number(mean)}, is "
                 f"above {self.factor:g} x its lowest, {self._number(lowest)} (train.loss_spike)")
        if self.action == 'warn':
            if not self.warned:
                get_root_logger().warning(f'iteration {done}: loss spike: {found}; training goes on (action: warn)')
            self.warned = True
            return
        restored = self._restore(done)
        if self.action == 'stop' or self.rewinds >= self.max_rewinds:
            after = '' if self.action == 'stop' else f' after {self.rewinds} rewinds (train.loss_spike.max_rewinds)'
            raise LossSpikeStop(f'iteration {done}: loss spike: {found}; {restored}; training stopped{after}. '
                                'Lower the learning rate, set train.grad_clip, or change train.loss_spike.')
        self.rewinds += 1
        self.detector.restart_window()
        lowered = ''
        if self.lr_factor < 1 and self.lr_iters:
            self.lower_lr_until = done + self.lr_iters
            lowered = f'; steps use {self.lr_factor:g} x the learning rates until iteration {self.lower_lr_until}'
        get_root_logger().warning(f'iteration {done}: loss spike: {found}; {restored}{lowered} (rewind {self.rewinds} '
                                  f'of {self.max_rewinds})')

    def _key_name(self, log):
        if self.key != 'total':
            return self.key
        return 'l_total' if 'l_total' in log else ' + '.join(name for name in TOTAL_TERMS if name in log)

    @staticmethod
    def _number(value):
        return f'{value:.4g}' if value is not None else 'unknown (rank 0 decides)'

    def _restore(self, done):
        """Restores the newest snapshot at least a window before ``done``; says what it restored."""
        before = [s for s in self.snapshots if s[0] <= done - self.window]
        if not before:
            if not self.snapshots:
                return 'no snapshot to restore yet, the weights are as the spike left them'
            before = self.snapshots[:1]  # the oldest kept: as far back as we can go
        iteration, state = before[-1]
        self._load(state)
        self.snapshots = [s for s in self.snapshots if s[0] <= iteration]
        names = ', '.join(state['networks'])
        return (f'restored {names}, the optimiser states{" and GradScalers" if state["scalers"] else ""} of iteration '
                f'{iteration} (in memory); the batches of iterations {iteration + 1}-{done} are not replayed')

    def _networks(self):
        return {name: self.model.get_bare_model(net) for name, net in model_networks(self.model).items()}

    def _capture(self):
        guard = self.model.step_guard
        return {'networks': {name: _to_cpu(net.state_dict()) for name, net in self._networks().items()},
                'optimizers': [_to_cpu(o.state_dict()) for o in self.model.optimizers],
                'scalers': {name: s.state_dict() for name, s in guard.scalers.items()},
                'skips_in_a_row': dict(guard.skips_in_a_row)}

    def _load(self, state):
        for name, net in self._networks().items():
            net.load_state_dict(state['networks'][name])
        for optimizer, saved in zip(self.model.optimizers, state['optimizers']):
            # the moments of then, the hyperparameters (learning rate) of now: the schedule follows the iteration
            now = [{k: v for k, v in group.items() if k != 'params'} for group in optimizer.param_groups]
            optimizer.load_state_dict(copy.deepcopy(saved))  # on the CPU it would keep the snapshot's tensors
            for group, values in zip(optimizer.param_groups, now):
                group.update(values)
        guard = self.model.step_guard
        for name, scaler_state in state['scalers'].items():
            guard.scalers[name].load_state_dict(scaler_state)
        guard.skips_in_a_row = dict(state['skips_in_a_row'])

    @contextlib.contextmanager
    def learning_rates(self, optimizer, current_iter):
        """The optimiser's learning rates x ``lr_factor`` inside the block while a rewind lowers them."""
        if current_iter > self.lower_lr_until:
            yield
            return
        saved = [group['lr'] for group in optimizer.param_groups]
        for group in optimizer.param_groups:
            group['lr'] = group['lr'] * self.lr_factor
        try:
            yield
        finally:
            for group, lr in zip(optimizer.param_groups, saved):
                group['lr'] = lr

    def state_dict(self):
        return {'values': list(self.detector.values), 'lowest': self.detector.lowest, 'rewinds': self.rewinds,
                'warned': self.warned, 'lower_lr_until': self.lower_lr_until, 'snapshots': list(self.snapshots)}

    def load_state_dict(self, state):
        self.detector.values, self.detector.lowest = list(state['values']), state['lowest']
        self.rewinds, self.warned, self.lower_lr_until = state['rewinds'], state['warned'], state['lower_lr_until']
        self.snapshots = [tuple(s) for s in state['snapshots']]
