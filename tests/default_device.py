"""The CUDA situation on a CPU: a default device that is not the model's device, for our code only.

On a GPU the model and its batches live on CUDA while torch's default device stays the CPU, so a tensor
our code creates without ``device=`` (``torch.arange(n)``, ``torch.tensor(x)``) lands on the CPU next to
CUDA tensors: a crash, or a silent copy and sync. On a CPU-only machine that bug is invisible.
:class:`OurDefaultDevice` makes it visible: inside it, every tensor factory call without an explicit
device (torch's own list, ``torch.utils._device._device_constructors()``: the calls ``with
torch.device(...)`` redirects) made by losses_plugin's code creates its tensor on 'meta', so mixing it
with the CPU model's tensors fails ("Tensor on device meta is not on the expected device cpu"), as mixing
CPU and CUDA tensors fails on a GPU. Stricter than CUDA in two ways, both still worth a ``device=``: a
0-dim CPU tensor mixes with CUDA tensors where a 0-dim meta one does not mix with CPU ones, and
``.item()`` of a meta tensor fails.

Scoped rather than plain ``with torch.device('meta')``: whose call it is decides. The caller is the
nearest Python frame outside torch's own package (so ``torch.distributions`` building a tensor for our
call counts as our call); it is ours when its module is ``losses_plugin`` or below (the top-level
``archs/`` folder installs as ``losses_plugin.archs``). Every other caller gets the tensor it would get
without the context: the tests building their inputs and expected values, BasicSR (its CPU/CUDA handling
is the compat layer's business), third-party architectures and metrics libraries, and torch itself.
What plain ``torch.device('meta')`` breaks on our models' paths, each right where it is
(``tests/models/test_default_device.py`` shows both):

- torch.utils.data's loader iterator (BasicSR's validation) draws its base seed with
  ``torch.empty((), dtype=torch.int64).random_().item()``: a CPU seed by design;
- spandrel's HAT (our HAT wraps it) builds its shifted-window attention mask with ``torch.zeros((1, h, w, 1))``
  and moves it with ``.to(x.device)``.

torch.optim's Adam needs no exclusion: it creates its ``step`` counter with ``device='cpu'`` explicitly.
"""
import sys

import torch
from torch.overrides import TorchFunctionMode
from torch.utils._device import _device_constructors

OUR_PACKAGE = 'losses_plugin'


def _module_of(frame):
    return frame.f_globals.get('__name__') or ''


def _in(module, package):
    return module == package or module.startswith(package + '.')


def _our_caller(frame):
    """The frame of losses_plugin that made the factory call whose direct caller is ``frame``, or None when
    the call is not ours (torch frames are skipped: the call counts as their caller's)."""
    while frame is not None and _in(_module_of(frame), 'torch'):
        frame = frame.f_back
    return frame if frame is not None and _in(_module_of(frame), OUR_PACKAGE) else None


class OurDefaultDevice(TorchFunctionMode):
    """Like ``with torch.device(device)``, but only for the tensors losses_plugin's code creates.

    Args:
        device (str): the default device our code gets ('meta': a device no real tensor is on).
    """

    def __init__(self, device='meta'):
        super().__init__()
        self.device = torch.device(device)
        self.redirected = []  # (factory name, 'module:line' of our caller) for each tensor put on `device`

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        if func in _device_constructors() and kwargs.get('device') is None:
            caller = _our_caller(sys._getframe(1))  # frame 1: the factory's caller (torch calls modes directly)
            if caller is not None:
                kwargs['device'] = self.device
                self.redirected.append((func.__name__, f'{_module_of(caller)}:{caller.f_lineno}'))
        return func(*args, **kwargs)
