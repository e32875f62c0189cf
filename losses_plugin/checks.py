"""Option and tensor checks shared by the losses, networks, models and the command line.

Every check raises :class:`OptionError` (a ``ValueError``) where the option is read, with one line
that names the option and what was expected; a real bug elsewhere keeps its own traceback.
"""
import os

import torch


class OptionError(ValueError):
    """An option file, option value or command line that cannot run; the message says what to change."""


def check_existing_file(key, path, hint):
    """``path`` (``~`` expanded, relative to the working directory) must be a file; ``key`` names the option."""
    if path is not None and not os.path.isfile(os.path.expanduser(path)):
        raise OptionError(f"{key}: '{path}' does not exist (relative to {os.getcwd()}); {hint}")


def check_choice(owner, option, value, choices):
    """``value`` of ``owner``'s (a loss's, network's or model's) ``option`` must be one of ``choices``
    (of the same type: 1 and 0 are not the choices true and false)."""
    if not any(value == choice and type(value) is type(choice) for choice in choices):
        raise OptionError(f"{owner}: option '{option}' must be one of {', '.join(map(repr, choices))}, got {value!r}")


def check_integer(owner, option, value, minimum):
    """``value`` of ``owner``'s ``option`` must be an integer (not a bool) ``>= minimum``."""
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise OptionError(f"{owner}: option '{option}' must be an integer >= {minimum}, got {value!r}")


def is_number(value) -> bool:
    """An int or a float, not a bool (YAML's ``true`` is an int to Python)."""
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def check_number(owner, option, value, minimum=None, above=None, maximum=None):
    """``value`` of ``owner``'s ``option`` must be a number (not a bool), ``>= minimum``, ``> above`` and
    ``<= maximum`` where given."""
    if not is_number(value):
        raise OptionError(f"{owner}: option '{option}' must be a number, got {value!r}")
    if minimum is not None and value < minimum:
        raise OptionError(f"{owner}: option '{option}' must be >= {minimum}, got {value!r}")
    if above is not None and value <= above:
        raise OptionError(f"{owner}: option '{option}' must be > {above}, got {value!r}")
    if maximum is not None and value > maximum:
        raise OptionError(f"{owner}: option '{option}' must be <= {maximum}, got {value!r}")


def check_inputs(loss_name, pred, target, weight=None, weight_name='weight'):
    """Shapes and dtypes BasicSR feeds: floating tensors of one shape, at least (C, H, W); ``weight`` (named
    ``weight_name`` in the message) must broadcast to them."""
    for name, tensor in (('pred', pred), ('target', target)):
        if not torch.is_tensor(tensor) or not tensor.is_floating_point():
            raise ValueError(f'{loss_name}: {name} must be a floating-point tensor, got '
                             f'{getattr(tensor, "dtype", type(tensor).__name__)}')
    if pred.shape != target.shape:
        raise ValueError(f'{loss_name}: pred and target must have the same shape, got {tuple(pred.shape)} '
                         f'and {tuple(target.shape)}')
    if pred.dim() < 4:
        raise ValueError(f'{loss_name}: expected (N, C, H, W) or (N, T, C, H, W) tensors, got {tuple(pred.shape)}')
    if weight is not None:
        try:
            fits = torch.broadcast_shapes(weight.shape, pred.shape) == pred.shape
        except RuntimeError:
            fits = False
        if not fits:
            raise ValueError(f'{loss_name}: {weight_name} of shape {tuple(weight.shape)} does not broadcast to '
                             f'{tuple(pred.shape)}')


def check_finite(loss_name, **tensors):
    for name, tensor in tensors.items():
        if tensor is not None and not torch.isfinite(tensor).all():
            raise ValueError(f'{loss_name}: {name} contains NaN or Inf')
