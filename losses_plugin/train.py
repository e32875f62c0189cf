"""The training pipeline behind ``basicsr train`` and ``python -m losses_plugin train``.

It is BasicSR's ``train_pipeline`` loop (same options, models, logging, checkpoints and
validation) with seven differences:

- a resumed run continues exactly: it skips the samples the interrupted epoch already used
  (BasicSR repeats the epoch from its start) and augmentations depend on the sample alone
  (:mod:`losses_plugin.data.deterministic_sampling`);
- every rank's random generators are saved with each checkpoint and restored (:mod:`losses_plugin.rng_state`);
- after distributed training it checks, and logs, that every rank holds the same parameters;
- with ``logger.log_weight_maps: true`` it logs each loss's weight map at every validation;
- a loss spike that ``train.loss_spike`` stops on is saved as a checkpoint of the restored, pre-spike state;
- SIGTERM or SIGINT (a scheduler's preemption, Ctrl-C) ends the run at the end of the current
  iteration with a resumable checkpoint of that iteration (all ranks agree which), then
  :class:`Interrupted`;
- the fsyncs and renames that complete a checkpoint set (:mod:`losses_plugin.checkpoint_sets`) run in a
  thread while training goes on, and final networks that could not be written end the run with
  :class:`CheckpointNotSaved`.

BasicSR's own ``basicsr.train.train_pipeline`` keeps working after ``import losses_plugin``
(on CPU too); it just lacks these seven.
"""
import contextlib
import datetime
import hashlib
import logging
import os
import signal
import time

import torch
import torch.distributed as dist
from basicsr.data import build_dataloader, build_dataset
from basicsr.data.prefetch_dataloader import CUDAPrefetcher
from basicsr.models import build_model
from basicsr.train import init_tb_loggers
from basicsr.utils import (AvgTimer, MessageLogger, get_env_info, get_root_logger, get_time_str, make_exp_dirs,
                           mkdir_and_rename, set_random_seed)
from basicsr.utils.options import copy_opt_file, dict2str

from losses_plugin import checkpoint_sets, rng_state
from losses_plugin.checks import OptionError
from losses_plugin.data.deterministic_sampling import KeySeededDataset, ResumableEnlargedSampler
from losses_plugin.distributed import any_rank
from losses_plugin.models.loss_spike import LossSpikeStop
from losses_plugin.models.sharded_validation import model_networks
from losses_plugin.models.training_step import TrainingStopped
from losses_plugin.options import parse_options
from losses_plugin.resume import load_resume_state
from losses_plugin.visualization import log_weight_maps


def build_train_loader(opt):
    dataset_opt = opt['datasets']['train']
    dataset = KeySeededDataset(build_dataset(dataset_opt), opt['manual_seed'])
    sampler = ResumableEnlargedSampler(dataset, opt['world_size'], opt['rank'],
                                       dataset_opt.get('dataset_enlarge_ratio', 1))
    loader = build_dataloader(
        dataset, dataset_opt, num_gpu=opt['num_gpu'], dist=opt['dist'], sampler=sampler, seed=opt['manual_seed'])
    # Worker seeds are drawn from this generator instead of advancing the global one at each epoch.
    loader.generator = torch.Generator()
    return loader, sampler


def build_val_loaders(opt, logger):
    loaders = []
    for phase, dataset_opt in opt['datasets'].items():
        if phase == 'train':
            continue
        if phase.split('_')[0] != 'val':
            raise OptionError(f"datasets.{phase}: training accepts the phases 'train' and 'val', 'val_2', ...")
        dataset = build_dataset(dataset_opt)
        loaders.append(
            build_dataloader(dataset, dataset_opt, num_gpu=opt['num_gpu'], dist=opt['dist'], seed=opt['manual_seed']))
        logger.info(f"Number of val images in {dataset_opt['name']}: {len(dataset)}")
    return loaders


def epoch_batches(loader, opt):
    if opt['datasets']['train'].get('prefetch_mode') == 'cuda':
        if opt['datasets']['train'].get('pin_memory') is not True:
            raise OptionError('datasets.train.pin_memory must be true with prefetch_mode: cuda')
        prefetcher = CUDAPrefetcher(loader, opt)
        batch = prefetcher.next()
        while batch is not None:
            yield batch
            batch = prefetcher.next()
    else:
        yield from loader


class Interrupted(TrainingStopped):
    """A stop signal ended the run after a resumable checkpoint; exits with 128 + the signal number."""

    def __init__(self, signum, current_iter, state_path):
        name = signal.Signals(signum).name
        super().__init__(f'stopped by {name} at iteration {current_iter}; training state saved to {state_path}; '
                         'continue with --auto_resume')
        self.exit_code = 128 + signum


class CheckpointNotSaved(TrainingStopped):
    """The checkpoint that should end the run could not be written (a full disk, an I/O error); exits non-zero."""

    def __init__(self, message, signum=None):
        super().__init__(message)
        if signum is not None:
            self.exit_code = 128 + signum


def save_checkpoint(model, opt, epoch, current_iter, iters_per_epoch):
    """Saves iteration ``current_iter``'s checkpoint set: the RNG states, the networks, the training state last
    (a collective: every rank calls it)."""
    rng_state.save(opt, current_iter, iters_per_epoch)
    model.save(epoch, current_iter)


class StopSignals:
    """SIGTERM and SIGINT set a flag instead of killing the process; the loop reads it between iterations."""

    SIGNALS = (signal.SIGTERM, signal.SIGINT)

    def __init__(self):
        self.received = 0
        self.previous = {}

    def __enter__(self):
        for signum in self.SIGNALS:
            self.previous[signum] = signal.signal(signum, self._handle)
            # restart interrupted system calls (SA_RESTART): a gloo/NCCL socket read cut by the signal would
            # otherwise fail with EINTR in one rank and reset its peers' connections
            signal.siginterrupt(signum, False)
        return self

    def __exit__(self, *exc):
        for signum, handler in self.previous.items():
            signal.signal(signum, handler)

    def _handle(self, signum, frame):
        self.received = signum

    def agreed(self, device):
        """The signal number when any rank received one, else 0; every rank calls this at the same iteration."""
        if not any_rank(self.received, device):
            return 0
        return self.received or int(signal.SIGTERM)  # a rank that did not receive it stops with its peers


def state_digest(net, kind='parameters'):
    """SHA-256 of a network's parameters or buffers (names and raw bytes, in state-dict order),
    DDP/DP wrappers removed."""
    net = getattr(net, 'module', net)
    names = {name for name, _ in (net.named_parameters() if kind == 'parameters' else net.named_buffers())}
    digest = hashlib.sha256()
    for name, tensor in net.state_dict().items():
        if name in names:
            digest.update(name.encode())
            digest.update(tensor.detach().cpu().contiguous().reshape(-1).view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()


def check_ranks_agree(model, opt, logger):
    """Logs whether every rank holds the same parameters in each ``net_*`` (a collective).

    Buffers are compared too but may differ: BatchNorm running statistics are updated by each
    rank's last forward pass (DDP re-broadcasts rank 0's at the next one); checkpoints hold rank 0's.
    """
    digests = {}
    for name, net in model_networks(model).items():
        digests[name, 'parameters'] = state_digest(net, 'parameters')
        if any(True for _ in net.buffers()):
            digests[name, 'buffers'] = state_digest(net, 'buffers')
    gathered = [None] * opt['world_size']
    dist.all_gather_object(gathered, digests)
    for name, kind in digests:
        per_rank = [g[(name, kind)] for g in gathered]
        if len(set(per_rank)) == 1:
            logger.info(f'{name} {kind} identical on all {len(per_rank)} ranks (sha256 {per_rank[0]})')
        elif kind == 'buffers':
            logger.info(f'{name} buffers (e.g. BatchNorm running statistics) differ between ranks, as each rank '
                        "updates them in its last forward pass; the checkpoint holds rank 0's")
        else:
            logger.error(f'{name} parameters differ between ranks: ' + ', '.join(
                f'rank {r}: {d}' for r, d in enumerate(per_rank)))


def restore_random_state(opt, current_iter, iters_per_epoch, logger):
    saved = rng_state.load(opt, current_iter)
    if saved is None:
        logger.warning(f'No random-generator states saved for iteration {current_iter} with world size '
                       f"{opt['world_size']}: resuming with fresh generators, so the run will not continue "
                       'bit-exactly.')
        return
    states, saved_iters_per_epoch = saved
    rng_state.restore(states)
    if saved_iters_per_epoch != iters_per_epoch:
        logger.warning(f'An epoch had {saved_iters_per_epoch} iterations when saved and has {iters_per_epoch} '
                       'now (batch size, world size or data changed): the sample order will not continue exactly.')


@contextlib.contextmanager
def held_log_records():
    """Holds what BasicSR's logger says before its log file exists (e.g. which checkpoints ``--auto_resume`` stepped
    over), for :func:`train_pipeline` to log once the file is open; printed to stderr if the run stops first.

    Yields:
        list: the held ``logging.LogRecord`` objects.
    """
    logger = logging.getLogger('basicsr')
    held = []
    if logger.handlers:  # set up already (BasicSR's own loop, a second run in one process): it logs as it goes
        yield held
        return
    handler = logging.Handler()
    handler.emit = held.append
    logger.addHandler(handler)
    try:
        yield held
    except BaseException:
        for record in held:
            logging.lastResort.handle(record)
        raise
    finally:
        logger.removeHandler(handler)


def train_pipeline(root_path):
    """Trains as ``basicsr.train.train_pipeline`` does; experiments go under ``root_path``.

    Returns:
        BaseModel: the trained BasicSR model.
    """
    opt, args = parse_options(root_path, is_train=True)
    opt['root_path'] = root_path
    # BasicSR seeds before it applies --force_yml, so `--force_yml manual_seed=K` would change the data order
    # but not the initial weights; seeding again from the final options makes K the run's seed
    set_random_seed(opt['manual_seed'] + opt['rank'])
    torch.backends.cudnn.benchmark = True

    with held_log_records() as early:
        resume_state = load_resume_state(opt)
    if resume_state is None:
        make_exp_dirs(opt)
        if opt['logger'].get('use_tb_logger') and 'debug' not in opt['name'] and opt['rank'] == 0:
            mkdir_and_rename(os.path.join(root_path, 'tb_logger', opt['name']))
    copy_opt_file(args.opt, opt['path']['experiments_root'])

    log_file = os.path.join(opt['path']['log'], f"train_{opt['name']}_{get_time_str()}.log")
    logger = get_root_logger(logger_name='basicsr', log_level=logging.INFO, log_file=log_file)
    for record in early:
        logger.handle(record)
    logger.info(get_env_info())
    logger.info(dict2str(opt))
    tb_logger = init_tb_loggers(opt)

    train_loader, sampler = build_train_loader(opt)
    val_loaders = build_val_loaders(opt, logger)
    iters_per_epoch = len(train_loader)
    if iters_per_epoch == 0:
        raise OptionError(f'datasets.train: {len(sampler)} samples per rank do not fill one batch of '
                          f'{train_loader.batch_size}; lower batch_size_per_gpu or raise dataset_enlarge_ratio')
    total_iters = int(opt['train']['total_iter'])
    logger.info(f'Training statistics:\n\tNumber of train images: {len(train_loader.dataset)}'
                f"\n\tWorld size: {opt['world_size']}; batch size per process: {train_loader.batch_size}"
                f'\n\tIterations per epoch: {iters_per_epoch}; total iterations: {total_iters}.')

    model = build_model(opt)
    # the set's fsyncs and renames go on in a thread while training continues; its tensors are on disk already
    checkpoint_sets.writer(opt).background = True
    current_iter = 0
    if resume_state:
        model.resume_training(resume_state)
        current_iter = resume_state['iter']
        restore_random_state(opt, current_iter, iters_per_epoch, logger)
        logger.info(f'Resuming training from iter: {current_iter}.')
    epoch, skip_iters = divmod(current_iter, iters_per_epoch)
    msg_logger = MessageLogger(opt, current_iter, tb_logger)

    logger.info(f'Start training from epoch: {epoch}, iter: {current_iter}')
    data_timer, iter_timer = AvgTimer(), AvgTimer()
    start_time = time.time()
    with StopSignals() as stop:
        while current_iter < total_iters:
            sampler.set_epoch(epoch, skip=skip_iters * train_loader.batch_size)
            skip_iters = 0
            for train_data in epoch_batches(train_loader, opt):
                data_timer.record()
                current_iter += 1
                try:
                    model.update_learning_rate(current_iter, warmup_iter=opt['train'].get('warmup_iter', -1))
                except LossSpikeStop as spike:  # the state before the spike is restored: keep it
                    save_checkpoint(model, opt, epoch, current_iter - 1, iters_per_epoch)
                    failed = checkpoint_sets.writer(opt).saved(current_iter - 1)
                    if failed:
                        raise CheckpointNotSaved(f'{spike} The restored state could not be saved ({"; ".join(failed)})'
                                                 '; --auto_resume continues from the newest complete checkpoint.')
                    raise LossSpikeStop(f'{spike} The restored state is saved as iteration {current_iter - 1}; '
                                        '--auto_resume continues from it.') from None
                model.feed_data(train_data)
                model.optimize_parameters(current_iter)
                iter_timer.record()
                if current_iter == 1:
                    msg_logger.reset_start_time()
                if current_iter % opt['logger']['print_freq'] == 0:
                    log_vars = {'epoch': epoch, 'iter': current_iter, 'lrs': model.get_current_learning_rate(),
                                'time': iter_timer.get_avg_time(), 'data_time': data_timer.get_avg_time()}
                    log_vars.update(model.get_current_log())
                    msg_logger(log_vars)
                if opt.get('val') is not None and current_iter % opt['val']['val_freq'] == 0:
                    if tb_logger and opt['logger'].get('log_weight_maps'):
                        log_weight_maps(model, tb_logger, current_iter)  # before validation replaces model.output
                    for val_loader in val_loaders:
                        model.validation(val_loader, current_iter, tb_logger, opt['val']['save_img'])
                save_now = current_iter % opt['logger']['save_checkpoint_freq'] == 0
                if save_now:
                    logger.info('Saving models and training states.')
                    save_checkpoint(model, opt, epoch, current_iter, iters_per_epoch)
                signum = stop.agreed(model.device)
                if signum:
                    if not save_now:
                        save_checkpoint(model, opt, epoch, current_iter, iters_per_epoch)
                    state_path = os.path.join(opt['path']['training_states'], f'{current_iter}.state')
                    failed = checkpoint_sets.writer(opt).saved(current_iter)
                    if any_rank(failed, model.device):
                        raise CheckpointNotSaved(f'stopped by {signal.Signals(signum).name} at iteration '
                                                 f'{current_iter}, but its checkpoint could not be saved ('
                                                 f'{"; ".join(failed) or "on rank 0"}); --auto_resume continues '
                                                 'from the newest complete one', signum)
                    logger.info(f'Stopped by {signal.Signals(signum).name}: saved the training state of iteration '
                                f'{current_iter}.')
                    raise Interrupted(signum, current_iter, state_path)
                if current_iter >= total_iters:
                    break
                data_timer.start()
                iter_timer.start()
            epoch += 1

    logger.info(f'End of training. Time consumed: {datetime.timedelta(seconds=int(time.time() - start_time))}')
    if model.device.type == 'cuda':
        logger.info(f'Peak CUDA memory allocated: {torch.cuda.max_memory_allocated(model.device) / 2 ** 20:.0f} MiB')
    logger.info('Save the latest model.')
    model.save(epoch=-1, current_iter=-1)
    failed = checkpoint_sets.writer(opt).saved(-1)
    if opt.get('val') is not None:
        for val_loader in val_loaders:
            model.validation(val_loader, current_iter, tb_logger, opt['val']['save_img'])
    if opt['dist']:
        check_ranks_agree(model, opt, logger)
    if tb_logger:
        tb_logger.close()
    if any_rank(failed, model.device):
        raise CheckpointNotSaved(f'training finished, but its final networks could not be saved ('
                                 f'{"; ".join(failed) or "on rank 0"}); the newest complete checkpoint is '
                                 f'{checkpoint_sets.writer(opt).newest or "an earlier one"}')
    return model
