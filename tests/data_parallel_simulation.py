"""``torch.nn.DataParallel`` as it runs on several GPUs, recreated on a CPU from torch's own pieces.

On a machine without CUDA, DataParallel only calls its module. :class:`SimulatedDataParallel` runs torch's
own ``DataParallel.forward``, ``scatter_kwargs``, ``replicate`` and ``gather`` instead, with only the device
transfers replaced:

- ``Scatter`` (copies of the batch's chunks to each GPU): ``chunk`` along dim 0, views with autograd;
- replicate's broadcast of parameters and buffers (``_broadcast_coalesced_reshape``): the first replica gets
  views of the originals (a GPU's broadcast hands the source device its own tensors: the replica's in-place
  buffer updates, BatchNorm's running statistics, reach the original), the others clones, which keep autograd
  back to the originals (so their gradients add up there, as Broadcast's backward does) and whose buffer
  updates are lost, as on the other GPUs;
- ``parallel_apply``: each replica runs in a new thread, which re-enters grad mode and autocast with only
  ``enabled=``, as torch's does (autocast's dtype is thread-local: a new thread's is the device type's default,
  bfloat16 on a CPU, float16 on CUDA);
- ``Gather``: ``cat`` along dim 0 (0-d outputs become vectors, as torch's Gather makes them).

The class is a DataParallel, so BasicSR's ``get_bare_model`` unwraps it. ``replica_threads`` lists the thread
of each replica of the last forward (a test can tell replica activations from the main thread's).
"""
import importlib
import threading
from contextlib import ExitStack
from unittest import mock

import torch
from torch.nn.parallel import scatter_gather

replicate_module = importlib.import_module('torch.nn.parallel.replicate')  # the name is shadowed by the function


def broadcast_on_one_cpu(tensors, devices, detach=False):
    """replicate's ``_broadcast_coalesced_reshape`` on one CPU: per device, one copy of each tensor."""
    first = [t if detach else t.view_as(t) for t in tensors]
    others = [[t.detach().clone() if detach else t.clone() for t in tensors] for _ in devices[1:]]
    return [first, *others] if tensors else []


class CPUScatter:
    """``torch.nn.parallel._functions.Scatter`` without the copies to GPUs."""

    @staticmethod
    def apply(target_gpus, chunk_sizes, dim, tensor):
        if chunk_sizes is not None:
            return tensor.split(list(chunk_sizes), dim)
        return tensor.chunk(len(target_gpus), dim)


class CPUGather:
    """``torch.nn.parallel._functions.Gather`` without the copies from GPUs."""

    @staticmethod
    def apply(target_device, dim, *outputs):
        if all(t.dim() == 0 for t in outputs):
            outputs = [t.view(1) for t in outputs]
        return torch.cat(outputs, dim)


class SimulatedDataParallel(torch.nn.DataParallel):
    """DataParallel over ``num_replicas`` simulated GPUs on the CPU.

    Args:
        module (nn.Module): the network, on the CPU.
        num_replicas (int): simulated GPUs; the batch is chunked into as many parts. Default: 2.
    """

    def __init__(self, module, num_replicas=2):
        torch.nn.Module.__init__(self)  # not DataParallel's: on a CUDA machine it would move the module there
        self.module = module
        self.dim = 0
        self.device_ids = list(range(num_replicas))
        self.output_device = 0
        self.src_device_obj = torch.device('cpu')
        self.replica_threads = []

    def forward(self, *inputs, **kwargs):
        with ExitStack() as stack:
            stack.enter_context(mock.patch.object(scatter_gather, 'Scatter', CPUScatter))
            stack.enter_context(mock.patch.object(scatter_gather, 'Gather', CPUGather))
            stack.enter_context(mock.patch.object(replicate_module, '_broadcast_coalesced_reshape',
                                                  broadcast_on_one_cpu))
            return super().forward(*inputs, **kwargs)

    def parallel_apply(self, replicas, inputs, kwargs):
        """torch's ``parallel_apply`` for the CPU: one new thread per replica, grad mode and autocast re-entered
        the way torch's worker does."""
        grad_enabled, autocast_enabled = torch.is_grad_enabled(), torch.is_autocast_enabled('cpu')
        results = [None] * len(replicas)

        def worker(i, replica, args, replica_kwargs):
            torch.set_grad_enabled(grad_enabled)
            try:
                with torch.autocast('cpu', enabled=autocast_enabled):
                    results[i] = replica(*args, **replica_kwargs)
            except Exception as error:  # raised again in the caller's thread, as torch's ExceptionWrapper does
                results[i] = error

        threads = [threading.Thread(target=worker, args=(i, replica, args, replica_kwargs))
                   for i, (replica, args, replica_kwargs) in enumerate(zip(replicas, inputs, kwargs))]
        if len(threads) == 1:  # torch's runs a single replica in the calling thread
            worker(0, replicas[0], inputs[0], kwargs[0])
            threads = [threading.current_thread()]
        else:
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join()
        self.replica_threads = threads
        for result in results:
            if isinstance(result, Exception):
                raise result
        return results
