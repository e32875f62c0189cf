"""Every rank's random-generator states, saved beside BasicSR's training state and restored on resume.

BasicSR's ``*.state`` files hold optimisers and schedulers only, and only rank 0 writes them. A
method that draws random numbers while training (TLW's relaxed-Bernoulli samples, dropout) needs
the generators too, per rank, for a resumed run to continue exactly. They go to
``training_states/<iter>_rng.pth``, which BasicSR's ``--auto_resume`` scan ignores.
"""
import os
import random

import numpy as np
import torch
import torch.distributed as dist

from losses_plugin import checkpoint_sets


def rng_state_path(opt, current_iter, folder=None):
    """``<iter>_rng.pth`` in ``folder`` (default: the run's ``training_states``)."""
    return os.path.join(folder or opt['path']['training_states'], f'{current_iter}_rng.pth')


def capture():
    # NumPy's key array travels as a tensor so that the file loads with ``weights_only=True``.
    name, keys, pos, has_gauss, gauss = np.random.get_state()
    state = {'python': random.getstate(), 'numpy': (name, torch.from_numpy(keys.astype(np.int64)), pos, has_gauss, gauss),
             'torch': torch.get_rng_state()}
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state['cuda'] = torch.cuda.get_rng_state_all()
    return state


def restore(state):
    """Sets the generators to ``state``. Of the saved CUDA states, those of the GPUs visible now: a run resumed
    with fewer GPUs visible than it saved (another node, another ``CUDA_VISIBLE_DEVICES``) continues with the
    generators of the GPUs it has, and a warning says which were left out."""
    random.setstate(state['python'])
    name, keys, pos, has_gauss, gauss = state['numpy']
    np.random.set_state((name, keys.numpy().astype(np.uint32), pos, has_gauss, gauss))
    torch.set_rng_state(state['torch'])
    if 'cuda' in state and torch.cuda.is_available():
        saved, visible = state['cuda'], torch.cuda.device_count()
        for index, device_state in enumerate(saved[:visible]):
            torch.cuda.set_rng_state(device_state, index)
        if len(saved) != visible:
            from basicsr.utils import get_root_logger

            get_root_logger().warning(
                f'The checkpoint holds the CUDA generator states of {len(saved)} GPUs and {visible} are visible now: '
                f'restored those of GPUs 0-{min(len(saved), visible) - 1}; a GPU without a saved state starts fresh.')


def save(opt, current_iter, iters_per_epoch):
    """Gathers all ranks' states (a collective: every rank calls it); rank 0 writes them."""
    states = [capture()]
    if opt['dist']:
        states = [None] * opt['world_size']
        dist.all_gather_object(states, capture())
    if opt['rank'] == 0:  # one file of the iteration's checkpoint set, written before its state
        checkpoint_sets.writer(opt).write(current_iter, {'ranks': states, 'iters_per_epoch': iters_per_epoch},
                                          rng_state_path(opt, current_iter))


def load(opt, current_iter):
    """This rank's saved states and the epoch length they were saved with; None if absent.

    They are read beside the state the run resumes from (``path.resume_state``, which ``--auto_resume`` sets too):
    a state of another experiment's folder has its generators there, not in this run's ``training_states``.
    """
    resumed = opt['path'].get('resume_state')
    path = rng_state_path(opt, current_iter, os.path.dirname(resumed) if resumed else None)
    if not os.path.isfile(path):
        return None
    saved = torch.load(path, weights_only=True)
    if len(saved['ranks']) != opt['world_size']:
        return None
    return saved['ranks'][opt['rank']], saved['iters_per_epoch']
