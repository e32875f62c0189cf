"""Validation under DDP that never hangs: every rank scores a shard, the metrics are summed.

BasicSR 1.4.2's ``SRModel.dist_validation`` validates on rank 0 alone through the DDP-wrapped
network; a network with buffers (BatchNorm) makes DDP broadcast them in that forward, a collective
the other ranks never join, so the run hangs. Here (installed by
:func:`losses_plugin.compat.patch_dist_validation`) every rank first takes rank 0's buffers (what the
checkpoint holds), runs the model's own ``nondist_validation`` on images ``rank, rank + world, ...``
through the unwrapped networks, and the per-image metric sums are all-reduced, so the logged means
equal a single-process validation of the same weights.
"""
import contextlib

import torch
import torch.distributed as dist
from torch.utils.data import DataLoader, Dataset

from losses_plugin.distributed import broadcast_buffers


def model_networks(model):
    """``{name: network}`` of every ``net_*`` module a BasicSR model holds (net_g, net_g_ema, net_w, ...)."""
    return {name: net for name, net in vars(model).items() if name.startswith('net_') and isinstance(net, torch.nn.Module)}


class _Shard(Dataset):
    """Items ``rank, rank + world, ...`` of a BasicSR dataset (keeps its ``opt``, which validation reads)."""

    def __init__(self, dataset, rank, world_size):
        self.dataset, self.opt = dataset, dataset.opt
        self.indices = range(rank, len(dataset), world_size)

    def __len__(self):
        return len(self.indices)

    def __getitem__(self, i):
        return self.dataset[self.indices[i]]


@contextlib.contextmanager
def _unwrapped_networks(model):
    wrapped = {name: net for name, net in model_networks(model).items() if hasattr(net, 'module')}
    for name, net in wrapped.items():
        setattr(model, name, net.module)
    try:
        yield
    finally:
        for name, net in wrapped.items():
            setattr(model, name, net)


@contextlib.contextmanager
def _metric_log_held_back(model):
    """The shard's means are not the run's: best-metric records and the log wait for the reduction."""
    model._update_best_metric_result = lambda *args, **kwargs: None
    model._log_validation_metric_values = lambda *args, **kwargs: None
    try:
        yield
    finally:
        del model._update_best_metric_result, model._log_validation_metric_values


def sharded_dist_validation(model, dataloader, current_iter, tb_logger, save_img):
    """``dist_validation`` for SRModel and its subclasses: a collective every rank calls."""
    dataset = dataloader.dataset
    shard = _Shard(dataset, model.opt['rank'], model.opt['world_size'])
    for net in model_networks(model).values():
        broadcast_buffers(getattr(net, 'module', net))
    with _unwrapped_networks(model), _metric_log_held_back(model):
        if len(shard):
            model.nondist_validation(DataLoader(shard, batch_size=1, shuffle=False, num_workers=dataloader.num_workers),
                                     current_iter, tb_logger, save_img)
    names = list((model.opt['val'].get('metrics') or {}))
    if not names:
        return
    results = getattr(model, 'metric_results', {})
    sums = torch.tensor([results.get(name, 0.0) * len(shard) for name in names], dtype=torch.float64,
                        device=model.device)
    dist.all_reduce(sums)
    model.metric_results = dict(zip(names, (sums / len(dataset)).tolist()))
    dataset_name = dataset.opt['name']
    model._initialize_best_metric_results(dataset_name)
    for name, value in model.metric_results.items():
        model._update_best_metric_result(dataset_name, name, value, current_iter)
    model._log_validation_metric_values(current_iter, dataset_name, tb_logger)
