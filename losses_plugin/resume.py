"""Finding and loading the training state a run resumes from, on the device it trains on.

BasicSR's ``load_resume_state`` maps the state to ``torch.cuda.current_device()``, which fails
without a GPU; :func:`load_resume_state` is the device-aware replacement that
:func:`losses_plugin.compat.patch_cpu_resume` installs and our training loop uses.
"""
import collections
import os

import torch


def load_training_state(path, opt):
    """Loads a ``*.state`` file onto the device the run trains on (CPU when ``num_gpu`` is 0).

    The scheduler states hold ``collections.Counter`` milestones, the one non-tensor type that
    ``torch.load(weights_only=True)`` must be told about.
    """
    if opt.get('num_gpu', 0) != 0 and torch.cuda.is_available():
        device = torch.device('cuda', torch.cuda.current_device())
    else:
        device = torch.device('cpu')
    with torch.serialization.safe_globals([collections.Counter]):
        return torch.load(path, map_location=device, weights_only=True)


def find_resume_state_path(opt):
    """The state to resume from: ``path.resume_state``, or the latest one with ``--auto_resume``.

    Like BasicSR, ``--auto_resume`` looks in ``experiments/<name>/training_states`` under the
    current working directory.
    """
    if not opt['auto_resume']:
        return opt['path'].get('resume_state')
    state_dir = os.path.join('experiments', opt['name'], 'training_states')
    if not os.path.isdir(state_dir):
        return None
    iters = [int(f[:-len('.state')]) for f in os.listdir(state_dir) if f.endswith('.state') and f[:-6].isdigit()]
    if not iters:
        return None
    path = os.path.join(state_dir, f'{max(iters)}.state')
    opt['path']['resume_state'] = path
    return path


def load_resume_state(opt):
    """Device-aware replacement of ``basicsr.train.load_resume_state``."""
    from basicsr.utils import check_resume

    path = find_resume_state_path(opt)
    if path is None:
        return None
    state = load_training_state(path, opt)
    check_resume(opt, state['iter'])
    return state
