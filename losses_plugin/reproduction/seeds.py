"""Seeds of one grid cell: each its own experiment name and ``manual_seed``, the option file unchanged.

Seed 1 is the option file as written (its ``name`` and ``manual_seed``), so a run trained before
``--seeds`` existed counts as one of the seeds. Seed i > 1 trains with ``manual_seed`` = the file's
seed + i - 1 under the name ``<name>_seed<that seed>``, from a derived option file that differs from the
original in those two keys only; ``--auto_resume`` then finds its own ``experiments/<name>_seed<k>/``.

A derived file rather than ``--force_yml manual_seed=<k>``: BasicSR 1.4.2's ``parse_options`` seeds
the random generators before it applies ``--force_yml``, so the network would start from the file's seed.
"""
import collections
import os
from dataclasses import dataclass

import yaml

SEED_OPTION_DIR = os.path.join('experiments', 'seed_options')  # under the run folder BasicSR writes


class _OptionDumper(yaml.SafeDumper):
    """Writes the ``OrderedDict`` options of ``read_option_file`` as plain mappings, in file order."""


_OptionDumper.add_representer(collections.OrderedDict, lambda dumper, data: dumper.represent_dict(data.items()))


@dataclass(frozen=True)
class Seed:
    index: int  # 1..N
    experiment: str  # experiments/<experiment>, tb_logger/<experiment>
    manual_seed: int


def seeds_of(opt, count):
    """The ``count`` seeds of the option file ``opt`` (its parsed options), seed 1 first."""
    if count < 1:
        raise ValueError(f'--seeds must be at least 1, got {count}')
    first = opt.get('manual_seed')
    if not isinstance(first, int) or isinstance(first, bool):
        raise ValueError(f"{opt['name']}: seeds need an integer manual_seed in the option file, got {first!r}")
    return [Seed(1, opt['name'], first)] + [Seed(i + 1, f"{opt['name']}_seed{first + i}", first + i)
                                            for i in range(1, count)]


def seed_option_file(path, opt, seed, folder=SEED_OPTION_DIR):
    """The option file that trains ``seed``: ``path`` itself for seed 1, else a derived copy in ``folder``."""
    if seed.index == 1:
        return path
    derived = collections.OrderedDict(opt, name=seed.experiment, manual_seed=seed.manual_seed)
    os.makedirs(folder, exist_ok=True)
    out = os.path.join(folder, f'{seed.experiment}.yml')
    with open(out, 'w', encoding='utf-8') as f:
        f.write(f'# Seed {seed.index} of {os.path.relpath(path)}, written by scripts/reproduce.py --seeds: '
                'only name and manual_seed differ.\n')
        yaml.dump(derived, f, Dumper=_OptionDumper, sort_keys=False, default_flow_style=None)
    return out
