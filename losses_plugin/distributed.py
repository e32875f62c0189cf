"""Process-group helpers shared by the training loop, the models and the compatibility patches.

- :data:`settings`: what the command line decided about the process group before BasicSR opens it
  (``num_gpu: 0`` trains distributed on CPU with gloo even where CUDA exists).
- :func:`trains_on_cpu`: the same decision read from BasicSR's own command line, for BasicSR's
  ``train_pipeline`` and a project's ``train.py``, which open the process group before they read ``num_gpu``.
- :func:`any_rank`, :func:`any_rank_each`: booleans all ranks agree on (a stop signal, a skipped step).
- :func:`broadcast_buffers`: rank 0's buffers (BatchNorm statistics) to every rank.
"""
import argparse
from dataclasses import dataclass
from typing import Optional, Sequence

import torch
import torch.distributed as dist
import yaml

from losses_plugin.yaml_loader import SafeOrderedLoader


@dataclass
class ProcessGroupSettings:
    cpu_backend: Optional[bool] = None  # gloo and CPU DDP even where CUDA is available; None: not decided yet


settings = ProcessGroupSettings()


def trains_on_cpu(argv: Sequence[str]) -> bool:
    """Whether BasicSR's command line ``argv`` (``-opt FILE [--force_yml num_gpu=N ...]``) trains with
    ``num_gpu: 0``. BasicSR's ``parse_options`` opens the process group (NCCL on a CUDA machine) before it
    reads ``num_gpu``, and would then wrap a CPU network in DDP on an NCCL group. An unreadable option file
    counts as not CPU: BasicSR reports it next."""
    parser = argparse.ArgumentParser(add_help=False)
    parser.add_argument('-opt')
    parser.add_argument('--force_yml', nargs='+', default=[])
    known, _ = parser.parse_known_args(list(argv))
    try:
        with open(known.opt, encoding='utf-8') as f:
            num_gpu = yaml.load(f, Loader=SafeOrderedLoader).get('num_gpu')
    except Exception:  # noqa: BLE001 (BasicSR's own reading of the file raises the real error)
        return False
    for entry in known.force_yml:  # BasicSR applies these after it opened the process group
        key, _, value = entry.partition('=')
        if key.strip() == 'num_gpu':
            num_gpu = yaml.safe_load(value.strip())
    return num_gpu == 0


def is_distributed():
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def any_rank(flag, device=None):
    """True on every rank when ``flag`` is true on any rank (a collective under DDP: all ranks call it)."""
    return any_rank_each([flag], device)[0]


def any_rank_each(flags, device=None):
    """:func:`any_rank` of each of ``flags``, in one all-reduce."""
    if not is_distributed():
        return [bool(flag) for flag in flags]
    if device is None:
        device = torch.device('cuda', torch.cuda.current_device()) if dist.get_backend() == 'nccl' else 'cpu'
    values = torch.tensor([1.0 if flag else 0.0 for flag in flags], device=device)
    dist.all_reduce(values, op=dist.ReduceOp.MAX)
    return [bool(v) for v in values.tolist()]


def broadcast_buffers(net):
    """Copies rank 0's buffers into every rank's ``net`` (a collective), as DDP does before a forward."""
    if is_distributed():
        for buffer in net.buffers():
            dist.broadcast(buffer.data, src=0)


def close_process_group():
    """Ends the process group BasicSR opened, if any (left to interpreter shutdown, gloo's threads can abort
    a rank after a successful run: 'terminate called without an active exception'). Returns whether it did."""
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()
        return True
    return False
