"""Each seed's final metrics, kept beside the report (``seeds.json``) so that a report can be completed or
rewritten after ``experiments/`` and ``tb_logger/`` are gone (another machine, a cleaned disk, a later
session that trains only the seeds still missing). Two reproduce.py processes may share one report folder
(one per core or GPU, each on the seeds the other has not claimed): ``updating_record`` serialises their writes."""
import contextlib
import datetime
import json
import os
import subprocess
from typing import Optional

from losses_plugin.reproduction.locks import exclusive_lock

RECORD_FILE = 'seeds.json'


def read_record(out_dir: str) -> dict:
    """``{experiment: {'total_iter', 'recorded', 'commit', 'metrics': {set: {metric: (value, step)}}, 'threads',
    'loss_spike'}}``; ``threads`` (the CPU threads it trained with) only where reproduce.py trained the seed itself,
    ``loss_spike`` only in seeds recorded since 7 December 2026."""
    path = os.path.join(out_dir, RECORD_FILE)
    if not os.path.isfile(path):
        return {}
    with open(path) as f:
        record = json.load(f)
    for entry in record.values():
        entry['metrics'] = {dataset: {metric: tuple(pair) for metric, pair in per_set.items()}
                            for dataset, per_set in entry['metrics'].items()}
    return record


def write_record(out_dir: str, record: dict) -> None:
    """Writes ``record`` whole, through a temporary file, so that a reader never sees half of it."""
    path = os.path.join(out_dir, RECORD_FILE)
    with open(f'{path}.tmp{os.getpid()}', 'w') as f:
        json.dump(record, f, indent=1, sort_keys=True)
        f.write('\n')
    os.replace(f.name, path)


@contextlib.contextmanager
def updating_record(out_dir: str):
    """Yields ``out_dir``'s record as it is now and writes it back on exit, holding an exclusive lock on the folder
    meanwhile: a seed recorded by another process between our read and our write is kept, not overwritten."""
    with exclusive_lock(out_dir):
        record = read_record(out_dir)
        yield record
        write_record(out_dir, record)


def recorded_seed(record: dict, experiment: str, total_iter: int) -> Optional[dict]:
    """The entry of ``experiment`` in ``record`` when it was recorded for ``total_iter`` (the run's schedule
    as it is now), else None."""
    entry = record.get(experiment)
    return entry if entry is not None and entry['total_iter'] == total_iter else None


def record_seed(record: dict, experiment: str, metrics: dict, total_iter: int, threads: Optional[int] = None,
                loss_spike: Optional[int] = None) -> None:
    """Enters metrics read from a seed's TensorBoard log into ``record``, dated today at the checked-out commit,
    with the CPU ``threads`` it trained with where known (on a CPU the float summation order, and so the digits
    of a run, follow the thread count) and the iteration its logged loss spiked at (``loss_spike``, None: it did
    not; :mod:`losses_plugin.reproduction.divergence`); an entry with the same metrics and total_iter keeps its
    first date, commit and threads (the seed's training)."""
    old = record.get(experiment)
    if old is None or old['metrics'] != metrics or old['total_iter'] != total_iter:
        record[experiment] = {'total_iter': total_iter, 'recorded': datetime.date.today().isoformat(),
                              'commit': current_commit(), 'metrics': metrics}
        if threads is not None:
            record[experiment]['threads'] = threads
    record[experiment]['loss_spike'] = loss_spike


def current_commit() -> Optional[str]:
    """The short hash of the repository's HEAD, or None outside a git checkout."""
    try:
        result = subprocess.run(['git', 'rev-parse', '--short', 'HEAD'], capture_output=True, text=True,
                                cwd=os.path.dirname(os.path.abspath(__file__)), check=False)
    except OSError:
        return None
    return result.stdout.strip() or None
