"""Finding and loading the training state a run resumes from, on the device it trains on.

BasicSR's ``load_resume_state`` maps the state to ``torch.cuda.current_device()``, which fails
without a GPU, and takes the newest ``N.state`` even when it is torn; :func:`load_resume_state` is
the replacement that :func:`losses_plugin.compat.patch_cpu_resume` installs and our training loop
uses. It resumes from the newest complete checkpoint set (:mod:`losses_plugin.checkpoint_sets`) and
loads the networks of that set.
"""
import os

import torch
import torch.distributed as dist

from losses_plugin import checkpoint_sets
from losses_plugin.checks import OptionError


def _device(opt):
    if opt.get('num_gpu', 0) != 0 and torch.cuda.is_available():
        return torch.device('cuda', torch.cuda.current_device())
    return torch.device('cpu')


def load_training_state(path, opt):
    """Loads a ``*.state`` file onto the device the run trains on (CPU when ``num_gpu`` is 0)."""
    return checkpoint_sets.load_state(path, _device(opt))


def choose_resume_state(opt):
    """The state to resume from and its contents: ``path.resume_state``, or with ``--auto_resume`` the newest
    complete set in ``experiments/<name>/training_states`` (under the current working directory, as BasicSR).

    ``--auto_resume`` also removes the temporary files of cut-short saves and warns, one line per file, about
    each newer set it steps over (left on disk).

    Returns:
        tuple: (state file, state), or (None, None) when there is nothing to resume from.

    Raises:
        OptionError: ``path.resume_state`` is not a complete checkpoint set.
    """
    device = _device(opt)
    if not opt['auto_resume']:
        path = opt['path'].get('resume_state')
        if not path:
            return None, None
        state, problems = checkpoint_sets.check_set(path, device)
        if problems:
            newest, _, _ = checkpoint_sets.newest_complete_set(os.path.dirname(path))
            newest = os.path.join(os.path.dirname(path), os.path.basename(newest)) if newest else 'none'
            file, why = problems[0]
            what = f'{path} {why}' if file == path else f'{path} is not a complete checkpoint: {file} {why}'
            raise OptionError(f'path.resume_state: {what}; the newest complete checkpoint there is {newest}')
        return path, state
    state_folder = os.path.join('experiments', opt['name'], 'training_states')
    if not os.path.isdir(state_folder):
        return None, None
    for path in checkpoint_sets.remove_temporary_files(os.path.dirname(state_folder)):
        checkpoint_sets.logger.warning(f'--auto_resume removed {path}, the temporary file of a save cut short.')
    path, state, stepped = checkpoint_sets.newest_complete_set(state_folder, device)
    for iteration, file, why in stepped:
        checkpoint_sets.logger.warning(f'--auto_resume steps over the checkpoint of iteration {iteration}: {file} '
                                       f'{why} (left on disk).')
    if path is not None:
        path = os.path.join(state_folder, os.path.basename(path))  # relative to the working directory, as BasicSR's
        opt['path']['resume_state'] = path
    return path, state


def find_resume_state_path(opt):
    """The state file :func:`choose_resume_state` picks (None: start afresh)."""
    return choose_resume_state(opt)[0]


def _agreed_choice(opt):
    """:func:`choose_resume_state` on rank 0, handed to every rank, so that all resume from one set."""
    if not (dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1):
        return choose_resume_state(opt)
    choice, state = [None, None], None
    if dist.get_rank() == 0:
        try:
            choice[0], state = choose_resume_state(opt)
        except OptionError as error:
            choice[1] = str(error)
    dist.broadcast_object_list(choice, src=0)
    path, error = choice
    if error:
        raise OptionError(error)
    if path is None:
        return None, None
    if state is None:  # the other ranks read the set rank 0 checked; nothing writes it while runs start
        opt['path']['resume_state'] = path
        state = load_training_state(path, opt)
    return path, state


def follow_set(opt, state_path, state):
    """Points ``path.pretrain_network_<x>`` (BasicSR's ``check_resume`` sets it to ``models/net_<x>_N.pth``)
    at the network files of the chosen set, as it lists them."""
    listed = state.get(checkpoint_sets.FILES_KEY, {})
    root = checkpoint_sets.experiment_folder(state_path)
    ignored = opt['path'].get('ignore_resume_networks') or []
    for network in (key for key in opt if key.startswith('network_') and key not in ignored):
        name = f"models/net_{network[len('network_'):]}_{state['iter']}.pth"
        if name in listed:
            opt['path'][f'pretrain_{network}'] = os.path.join(root, name)


def load_resume_state(opt):
    """Device-aware, set-aware replacement of ``basicsr.train.load_resume_state``."""
    from basicsr.utils import check_resume

    path, state = _agreed_choice(opt)
    if path is None:
        return None
    check_resume(opt, state['iter'])
    follow_set(opt, path, state)
    return state
