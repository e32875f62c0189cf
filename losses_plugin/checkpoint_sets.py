"""An iteration's checkpoint is a set of files, and it counts only when every file of it is in place.

A set is the networks of iteration N (``models/net_g_N.pth`` with EMA's ``params_ema``, TLW's
``models/net_w_N.pth``, ...), our trainer's ``training_states/N_rng.pth``, and ``training_states/N.state``,
written last: the state lists the set's other files with their sizes and CRC-32 (``checkpoint_files``),
so a set is complete when its state loads and every file it lists is there with that size and checksum.
Every file goes through :mod:`losses_plugin.checkpoint_files` (temporary name, fsync, ``os.replace``).

- :class:`SetWriter` writes the sets of one experiment. A disk error (ENOSPC, EIO, ...) while writing one
  is a warning naming the file; that set's state is then not written, the previous complete set stays
  the newest, and training goes on. ``logger.keep_checkpoints: K`` deletes the sets older than the
  newest K complete ones (default: keep all, as BasicSR).
- :func:`newest_complete_set` is what ``--auto_resume`` resumes from; newer sets that are torn, partial
  or unreadable are reported file by file (:func:`stepped_over`) and left on disk.

States written before sets existed (no file list) count as complete when they load.
"""
import collections
import errno
import logging
import os
import re
import threading

import torch

from losses_plugin import checkpoint_files
from losses_plugin.checks import OptionError

FILES_KEY = 'checkpoint_files'  # in N.state: {path relative to the experiment folder: {'size', 'crc32'}}
# Errors of the disk rather than of the program: a save that meets one is skipped with a warning.
STORAGE_ERRORS = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EIO, errno.EFBIG, errno.EROFS})
SET_FILE = {'training_states': re.compile(r'^(\d+)(?:\.state|_rng\.pth)$'),
            'models': re.compile(r'^net_.+_(\d+)\.pth$')}

logger = logging.getLogger('basicsr')  # BasicSR's root logger: its log file and console once set up


def keep_checkpoints(opt: dict):
    """``logger.keep_checkpoints``: how many complete sets to keep (None: all).

    Args:
        opt (dict): The run's options.

    Raises:
        OptionError: The value is not an integer >= 1.
    """
    keep = (opt.get('logger') or {}).get('keep_checkpoints')
    if keep is not None and (isinstance(keep, bool) or not isinstance(keep, int) or keep < 1):
        raise OptionError(f'logger.keep_checkpoints must be an integer >= 1 (how many complete checkpoints to '
                          f'keep; leave it out to keep all), got {keep!r}')
    return keep


def load_state(path: str, map_location='cpu') -> dict:
    """Loads an ``N.state`` file (``weights_only``; its schedulers hold ``collections.Counter`` milestones).

    Args:
        path (str): The file.
        map_location (str or torch.device): Where its tensors go (``torch.load``'s argument).
    """
    with torch.serialization.safe_globals([collections.Counter]):
        return torch.load(path, map_location=map_location, weights_only=True)


def experiment_folder(state_path: str) -> str:
    """The experiment folder of ``<experiment>/training_states/N.state``, which the set's file names start from."""
    return os.path.dirname(os.path.dirname(os.path.abspath(state_path)))


def file_problem(path: str, record: dict, checksum: bool = True):
    """Why the file at ``path`` is not the one a set lists (``record``), or None when it is.

    Args:
        path (str): The file.
        record (dict): ``{'size', 'crc32'}`` as the set lists it.
        checksum (bool): Compare the CRC-32 too (reads the file), not only the size.
    """
    if not os.path.isfile(path):
        return 'is missing'
    size = os.path.getsize(path)
    if size != record['size']:
        return f"has {size} bytes, the set lists {record['size']}"
    if checksum and checkpoint_files.record_of(path)['crc32'] != record['crc32']:
        return 'differs from the file that was written (CRC-32)'
    return None


def check_set(state_path: str, map_location='cpu', checksum: bool = True):
    """Loads a set's state and checks the files it lists.

    Args:
        state_path (str): The ``N.state`` file.
        map_location (str or torch.device): Where the state's tensors go.
        checksum (bool): Compare each file's CRC-32, not only its size.

    Returns:
        tuple: (the state, or None when the set is not complete; ``[(file, why), ...]``, empty when it is).
    """
    if not os.path.isfile(state_path):
        return None, [(state_path, 'is missing')]
    try:
        state = load_state(state_path, map_location)
    except Exception as error:  # a torn or foreign file fails in zipfile, pickle or torch, each its own way
        reason = str(error).strip().splitlines()[0] if str(error).strip() else ''
        return None, [(state_path, f'cannot be loaded ({type(error).__name__}: {reason})')]
    if not isinstance(state, dict) or 'iter' not in state:
        return None, [(state_path, 'is not a training state')]
    root = experiment_folder(state_path)
    problems = []
    for name, record in state.get(FILES_KEY, {}).items():
        problem = file_problem(os.path.join(root, name), record, checksum)
        if problem:
            problems.append((os.path.join(root, name), problem))
    return (None if problems else state), problems


def set_files(root: str) -> dict:
    """``{iteration: [paths]}`` of every checkpoint file in an experiment folder (temporary files left out)."""
    found = collections.defaultdict(list)
    for folder, pattern in SET_FILE.items():
        folder = os.path.join(root, folder)
        for name in sorted(os.listdir(folder)) if os.path.isdir(folder) else []:
            match = pattern.match(name)
            if match:
                found[int(match.group(1))].append(os.path.join(folder, name))
    return found


def newest_complete_set(state_folder: str, map_location='cpu', below=None):
    """The newest complete set in a ``training_states`` folder.

    Args:
        state_folder (str): The folder.
        map_location (str or torch.device): Where the chosen state's tensors go.
        below (int, optional): Only sets of earlier iterations.

    Returns:
        tuple: (its state file or None, its state or None, ``[(iteration, file, why), ...]`` for the newer sets'
            files that keep them from counting).
    """
    root = os.path.dirname(os.path.abspath(state_folder))
    files = set_files(root)
    stepped = []
    for iteration in sorted(files, reverse=True):
        if below is not None and iteration >= below:
            continue
        state_path = os.path.join(root, 'training_states', f'{iteration}.state')
        if state_path not in files[iteration]:
            stepped += [(iteration, path, 'is there without the training state of its iteration: the save did not '
                         'finish') for path in files[iteration]]
            continue
        state, problems = check_set(state_path, map_location)
        if state is not None:
            return state_path, state, stepped
        stepped += [(iteration, path, why) for path, why in problems]
    return None, None, stepped


def remove_temporary_files(root: str) -> list:
    """Removes the temporary files that saves cut short left in an experiment's ``models`` and
    ``training_states`` folders; returns their paths."""
    removed = []
    for folder in SET_FILE:
        folder = os.path.join(root, folder)
        for name in sorted(os.listdir(folder)) if os.path.isdir(folder) else []:
            if checkpoint_files.is_temporary(name):
                checkpoint_files.discard(os.path.join(folder, name))
                removed.append(os.path.join(folder, name))
    return removed


class SetWriter:
    """Writes the checkpoint sets of one experiment folder (on rank 0, which alone saves).

    ``write`` saves a file of iteration N (:func:`losses_plugin.checkpoint_files.save`) and ``commit``
    writes N's state with the list of those files. With ``background`` set (our trainer sets it), ``write``
    only stages the file (``torch.save`` into a temporary file) and ``commit`` hands the fsyncs and renames
    of the set, the state last, to a thread while training goes on: fsync waits for the disk, and the
    tensors are in the temporary files already. Iteration -1 (BasicSR's ``*_latest.pth``, outside any set)
    is written at once.

    Args:
        root (str): The experiment folder.
        keep (int, optional): ``logger.keep_checkpoints``.
    """

    def __init__(self, root, keep=None):
        self.root = root
        self.keep = keep
        self.background = False
        self.staged = collections.defaultdict(list)  # iteration -> [(temporary or None, record, path)]
        self.failed = collections.defaultdict(list)  # iteration -> ['path: error']
        self.newest = None  # the newest set this writer completed
        self.thread = None
        self.error = None

    def write(self, current_iter: int, obj, path: str) -> None:
        """Saves one file of iteration ``current_iter``'s set (``-1``: a ``*_latest.pth`` file, at once).

        Args:
            current_iter (int): The iteration.
            obj (object): What to save.
            path (str): Where.
        """
        try:
            if current_iter < 0 or not self.background:
                record = checkpoint_files.save(obj, path)
                if current_iter >= 0:
                    self.staged[current_iter].append((None, record, path))
            else:
                self._publish_uncommitted(but=current_iter)
                self.staged[current_iter].append((*checkpoint_files.write_temporary(obj, path), path))
        except OSError as error:
            self._storage_error(current_iter, path, error)

    def commit(self, current_iter: int, state: dict, path: str) -> None:
        """Writes iteration ``current_iter``'s state, listing the set's files, and completes the set.

        Args:
            current_iter (int): The iteration.
            state (dict): The training state (optimisers, schedulers, ...).
            path (str): The state file, ``training_states/<current_iter>.state``.
        """
        staged = self.staged.pop(current_iter, [])
        self.wait()
        if not self.failed.get(current_iter):
            state[FILES_KEY] = {os.path.relpath(p, self.root): record for _, record, p in staged}
            try:
                if self.background:
                    staged.append((*checkpoint_files.write_temporary(state, path), path))
                else:
                    checkpoint_files.save(state, path)
            except OSError as error:
                self._storage_error(current_iter, path, error)
        if self.failed.get(current_iter):
            for temporary, _, _ in staged:
                if temporary is not None:
                    checkpoint_files.discard(temporary)
            logger.warning(f'Checkpoint of iteration {current_iter} not complete ('
                           f'{"; ".join(self.failed[current_iter])}): its training state is not written and the '
                           f'newest complete checkpoint stays {self.newest or "the previous one"}.')
            return
        if self.background:
            self.thread = threading.Thread(target=self._complete, args=(current_iter, staged),
                                           name=f'checkpoint {current_iter}')
            self.thread.start()
        else:
            self.newest = path
            self._retain()

    def wait(self) -> None:
        """Waits for the set being completed in the background; raises what went wrong there (not a disk error)."""
        if self.thread is not None:
            self.thread.join()
            self.thread = None
        if self.error is not None:
            error, self.error = self.error, None
            raise error

    def saved(self, current_iter: int) -> list:
        """``['path: error', ...]`` of iteration ``current_iter``'s files that could not be saved (empty: all were)."""
        self.wait()
        self._publish_uncommitted()
        return list(self.failed.get(current_iter, []))

    def _publish_uncommitted(self, but=None):
        """Puts in place, outside any set, the staged files of iterations that no state committed (a model whose
        ``save`` writes networks only), so that no file it saved is lost."""
        for iteration in [i for i in self.staged if i != but]:
            for temporary, _, path in self.staged.pop(iteration):
                try:
                    checkpoint_files.publish(temporary, path)
                    checkpoint_files.fsync_folder(os.path.dirname(path))
                except OSError as error:
                    self._storage_error(iteration, path, error)

    def _storage_error(self, current_iter, path, error):
        if error.errno not in STORAGE_ERRORS:
            raise error
        self.failed[current_iter].append(f'{path}: {error.strerror}')
        later = '; the checkpoint of this iteration will not count; training goes on' if current_iter >= 0 else ''
        logger.warning(f'Could not save {path}: [Errno {error.errno}] {error.strerror}{later}.')

    def _complete(self, current_iter, staged):
        """fsyncs and renames the staged files, then the state (the last of ``staged``); retention after."""
        try:
            try:
                for temporary, _, path in staged[:-1]:  # in background mode all are temporary files
                    checkpoint_files.publish(temporary, path)
                for folder in sorted({os.path.dirname(p) for _, _, p in staged[:-1]}):
                    checkpoint_files.fsync_folder(folder)
                temporary, _, path = staged[-1]
                checkpoint_files.publish(temporary, path)
                checkpoint_files.fsync_folder(os.path.dirname(path))
            except OSError as error:
                for temporary, _, _ in staged:
                    checkpoint_files.discard(temporary)
                self._storage_error(current_iter, path, error)
                return
            self.newest = path
            self._retain()
        except BaseException as error:  # handed to the training thread by wait()
            self.error = error

    def _retain(self):
        if self.keep is None:
            return
        complete = 0
        states = set_files(self.root)
        for iteration in sorted(states, reverse=True):
            state_path = os.path.join(self.root, 'training_states', f'{iteration}.state')
            if state_path not in states[iteration]:
                continue
            try:
                listed = load_state(state_path).get(FILES_KEY)
            except Exception:  # unreadable: not a set this writer may delete
                continue
            if listed is None:  # written before sets existed: left alone
                continue
            if complete >= self.keep:
                os.remove(state_path)  # first: the set stops counting before its files go
                for name in listed:
                    checkpoint_files.discard(os.path.join(self.root, name))
            elif not any(file_problem(os.path.join(self.root, n), r, checksum=False) for n, r in listed.items()):
                complete += 1


_writers = {}


def writer(opt: dict) -> SetWriter:
    """The :class:`SetWriter` of the run's experiment folder (``path.experiments_root``), one per process.

    Args:
        opt (dict): The run's options.
    """
    root = os.path.abspath(opt['path']['experiments_root'])
    if root not in _writers:
        _writers[root] = SetWriter(root, keep_checkpoints(opt))
    return _writers[root]
