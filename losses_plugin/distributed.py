"""Process-group helpers shared by the training loop, the models and the compatibility patches.

- :data:`settings`: what the command line decided about the process group before BasicSR opens it
  (``num_gpu: 0`` trains distributed on CPU with gloo even where CUDA exists).
- :func:`any_rank`, :func:`any_rank_each`: booleans all ranks agree on (a stop signal, a skipped step).
- :func:`broadcast_buffers`: rank 0's buffers (BatchNorm statistics) to every rank.
"""
from dataclasses import dataclass

import torch
import torch.distributed as dist


@dataclass
class ProcessGroupSettings:
    cpu_backend: bool = False  # gloo and CPU DDP even where CUDA is available


settings = ProcessGroupSettings()


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
