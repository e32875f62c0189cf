"""Strict option keys: every key of a loss, network, metric or model option is one its class reads.

BasicSR hands a loss's, network's or metric's options to the registered class as keyword arguments,
so a misspelt key (``alpah: 2``) ends in a ``TypeError`` from deep inside the build, or is dropped
without a word where the class takes ``**kwargs`` (BasicSR's metric functions, SwinIR); a ``train:``
key that no model reads (``amp``) is ignored as well. :func:`check_option_keys` compares every key
with what the registered class accepts, before anything is built, and names the nearest valid key:

    options/x.yml: train.pixel_opt.alpah is not an option of SPLoss; did you mean 'alpha'? (valid: alpha, ...)

What a class accepts is read from its signature (:func:`accepted_options`). The ``train:`` keys of a
model are SRModel's (below) plus the ``TRAIN_KEYS`` each subclass declares, e.g. ::

    class TLWModel(SRModel):
        TRAIN_KEYS = ('optim_w', 'scheduler_w', 'tlw')

(``'uncertainty_estimator.network'`` also checks the keys inside ``uncertainty_estimator``). A model
class without ``TRAIN_KEYS`` between it and SRModel (a user's model, BasicSR's GAN models) may read
any key, so its ``train:`` keys are not checked; its losses, networks and metrics still are.

A top-level ``strict_options: false`` turns every finding into a warning, one line per key.
"""
import difflib
import inspect
import sys

from torch import nn

# What BasicSR's SRModel reads from ``train:`` (sr_model.py, base_model.py) and its training loop
# (train.py: total_iter, warmup_iter).
SR_MODEL_TRAIN_KEYS = ('ema_decay', 'optim_g', 'scheduler', 'total_iter', 'warmup_iter', 'pixel_opt',
                       'perceptual_opt')
# Read by losses_plugin.models.training_step.StepGuard, which compat.patch_guarded_steps builds in
# SRModel.init_training_settings, so every model that calls it reads them.
STEP_GUARD_TRAIN_KEYS = ('amp', 'grad_clip', 'non_finite', 'channels_last', 'compile', 'deterministic',
                         'loss_spike')
# What BasicSR's SRGANModel (and ESRGANModel, which adds nothing) reads from ``train:`` (srgan_model.py). Its
# init_training_settings and optimize_parameters are its own, without the step guard: the guard's keys
# would be ignored there, so they are not among these.
SRGAN_MODEL_TRAIN_KEYS = ('ema_decay', 'optim_g', 'optim_d', 'scheduler', 'total_iter', 'warmup_iter', 'pixel_opt',
                          'ldl_opt', 'perceptual_opt', 'gan_opt', 'net_d_iters', 'net_d_init_iters')
# BasicSR's calculate_metric(data, opt) calls metric(**data, **opt): SRModel supplies the images, and
# 'better' (which of higher/lower is best) is read by the model, not by the metric.
METRIC_DATA = ('img', 'img2')
METRIC_EXTRAS = ('better', )
# Networks given inside other options, as a dict with a 'type' (besides arch options holding one).
NESTED_NETWORKS = (('train', 'uncertainty_estimator', 'network'), )


def _keyword_parameters(function):
    """(names that can be passed by keyword, whether it takes ``**kwargs``), ``self`` left out."""
    parameters = list(inspect.signature(function).parameters.values())
    names = [p.name for p in parameters if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY) and p.name != 'self']
    return names, any(p.kind == p.VAR_KEYWORD for p in parameters)


def accepted_options(target):
    """The option names a registered class or function accepts, in signature order.

    A bare ``**kwargs`` accepts nothing more, unless a class's ``__init__`` forwards it: then the named
    parameters of the base classes' ``__init__`` along the MRO count too (up to ``nn.Module``).
    """
    if not inspect.isclass(target):
        return _keyword_parameters(target)[0]
    names = []
    for cls in target.__mro__:
        if cls in (nn.Module, object):
            break
        if '__init__' not in vars(cls):
            continue
        own, forwards = _keyword_parameters(vars(cls)['__init__'])
        names += [name for name in own if name not in names]
        if not forwards:
            break
    return names


def model_train_keys(model_cls):
    """``{key: [checked sub-keys]}`` of the ``train:`` options ``model_cls`` reads, or None when unknown.

    SRModel's keys (SRGANModel's for BasicSR's GAN models) plus every subclass's ``TRAIN_KEYS`` along the
    MRO; unknown when a class between ``model_cls`` and SRModel declares no ``TRAIN_KEYS``, or when the
    model is not an SRModel.
    """
    from basicsr.models.esrgan_model import ESRGANModel
    from basicsr.models.sr_model import SRModel
    from basicsr.models.srgan_model import SRGANModel

    base_keys = {SRModel: SR_MODEL_TRAIN_KEYS + STEP_GUARD_TRAIN_KEYS, SRGANModel: SRGAN_MODEL_TRAIN_KEYS,
                 ESRGANModel: SRGAN_MODEL_TRAIN_KEYS}
    declared = []
    for cls in model_cls.__mro__:
        if cls in base_keys:
            keys = {}
            for entry in base_keys[cls] + tuple(declared):
                key, _, sub = entry.partition('.')
                keys.setdefault(key, [])
                if sub:
                    keys[key].append(sub)
            return keys
        if 'TRAIN_KEYS' not in vars(cls):
            return None
        declared = list(vars(cls)['TRAIN_KEYS']) + declared  # the base class's first
    return None


def _unknown_key(path, key, owner, valid):
    close = difflib.get_close_matches(str(key), [str(v) for v in valid], n=1)
    hint = f"; did you mean '{close[0]}'?" if close else ''
    return f'{path}.{key} is not an option of {owner}{hint} (valid: {", ".join(map(str, valid)) or "none"})'


def _unregistered(path, name, registry):
    close = difflib.get_close_matches(str(name), list(registry.keys()), n=3)
    hint = f' (close matches: {", ".join(close)})' if close else ''
    return f"{path}.type: '{name}' is not in BasicSR's {registry._name} registry{hint}"


def _keys_problems(path, options, owner, valid):
    return [_unknown_key(path, key, owner, valid) for key in options if key != 'type' and key not in valid]


def _network_problems(path, net_opt):
    """Unknown keys of a network's options and of the networks inside them (``backbone: {type: ...}``)."""
    from basicsr.utils.registry import ARCH_REGISTRY

    name = net_opt.get('type')
    if name not in ARCH_REGISTRY:
        return [_unregistered(path, name, ARCH_REGISTRY)]
    valid = accepted_options(ARCH_REGISTRY.get(name))
    problems = _keys_problems(path, net_opt, name, valid)
    for key, value in net_opt.items():
        if key in valid and isinstance(value, dict) and 'type' in value:
            problems += _network_problems(f'{path}.{key}', value)
    return problems


def _train_problems(model_type, train):
    from basicsr.utils.registry import MODEL_REGISTRY

    if model_type not in MODEL_REGISTRY:  # reported by options.check_registered_names
        return []
    keys = model_train_keys(MODEL_REGISTRY.get(model_type))
    if keys is None:
        return []
    problems = _keys_problems('train', train, model_type, list(keys))
    for key, sub_keys in keys.items():
        if sub_keys and isinstance(train.get(key), dict):
            problems += _keys_problems(f'train.{key}', train[key], f'{model_type} (train.{key})', sub_keys)
    return problems


def _nested(opt, keys):
    for key in keys:
        opt = opt.get(key) if isinstance(opt, dict) else None
    return opt


def option_key_problems(opt):
    """One message per key of ``opt`` that the class it is given to does not read."""
    from basicsr.utils.registry import LOSS_REGISTRY, METRIC_REGISTRY

    problems = []
    for key, value in opt.items():
        if str(key).startswith('network_') and isinstance(value, dict):
            problems += _network_problems(key, value)
    for keys in NESTED_NETWORKS:
        value = _nested(opt, keys)
        if isinstance(value, dict):
            problems += _network_problems('.'.join(keys), value)
    train = opt.get('train')
    if isinstance(train, dict):
        problems += _train_problems(opt.get('model_type'), train)
        for key, value in train.items():
            if str(key).endswith('_opt') and isinstance(value, dict) and value.get('type') in LOSS_REGISTRY:
                name = value['type']
                problems += _keys_problems(f'train.{key}', value, name, accepted_options(LOSS_REGISTRY.get(name)))
    for key, value in (_nested(opt, ('val', 'metrics')) or {}).items():
        if isinstance(value, dict) and value.get('type') in METRIC_REGISTRY:
            name = value['type']
            valid = [p for p in accepted_options(METRIC_REGISTRY.get(name)) if p not in METRIC_DATA]
            problems += _keys_problems(f'val.metrics.{key}', value, name, valid + list(METRIC_EXTRAS))
    return problems


def check_option_keys(opt, path=None):
    """Raises :class:`OptionError` (one line per unknown key, naming ``path``, the option file) unless
    the top-level ``strict_options: false``: then prints each line as a warning and returns them.

    Returns:
        list[str]: the warnings printed (empty when every key is read).
    """
    from losses_plugin.checks import OptionError

    prefix = f'{path}: ' if path else ''
    strict = opt.get('strict_options', True)
    if not isinstance(strict, bool):
        raise OptionError(f'{prefix}strict_options: expected true or false, got {strict!r}')
    lines = [prefix + problem for problem in option_key_problems(opt)]
    if lines and strict:
        raise OptionError('\n'.join(lines))
    for line in lines:
        print(f'warning: {line} (strict_options: false, so not an error)', file=sys.stderr)
    return lines
