"""Runs a paper's grid of experiments and writes its report beside the paper's numbers.

    python scripts/reproduce.py --paper sploss|sploss_gopro|asymmetric|zhao|tlw|fgd --scale demo|full
                                [--seeds N] [--runs NAME ...] [--force] [--launch]

- ``--scale demo``: trains each run's CPU twin (``options/demo/``) on the bundled demo data, one after
  the other (a seed finished earlier, here or in the report folder's ``seeds.json``, is skipped unless
  ``--force``; an interrupted one resumes), then reports;
- ``--scale full``: checks that the prepared datasets exist (and refuses, saying how to prepare
  them, when they do not), prints the ``torchrun`` command of every run (``--launch`` runs them),
  then reports on whatever has finished.
- ``--runs NAME ...`` trains (or, full scale, prints) only these runs of the grid, named by their option files
  (``dncnn_s25_asy_l1``), in grid order; the report still covers the whole grid. For a grid too long for one
  sitting: the cells a comparison needs first.
- ``--seeds N`` (default 1) trains every run N times, seed 1 being the option file itself and seed i its
  copy with ``manual_seed`` + i - 1 under the name ``<name>_seed<k>`` (see ``reproduction/seeds.py``);
  each run's seeds are trained one after the other before the next run's.
- Two or more ``reproduce.py`` of one grid may run side by side on one machine (one per core or GPU, same
  ``--out``): each claims a seed before it trains it and skips a seed another one is training
  (``reproduction/locks.py``), and ``seeds.json`` keeps every process's seeds.
The report goes to ``results/<paper>/<scale>/`` (``--out``): ``report.md`` (every run's final validation
metrics, mean and std over its seeds, beside the paper's; each method against its baseline, called real
only when the difference exceeds the seed spread), a bar chart per metric, a crop panel of one
validation image from every run (seed 1), and ``seeds.json``: every finished seed's final metrics with the
date and commit they were read at, written as each seed finishes. From it a later ``--report-only``, or a
run that trains only the missing seeds, completes the report when ``experiments/`` and ``tb_logger/`` are
gone (another machine, a cleaned disk).
"""
import argparse
import json
import os
import re
import subprocess
import sys
from dataclasses import replace

import losses_plugin  # noqa: F401  (first: patches BasicSR and registers our classes)

import torch
from tqdm import tqdm

from losses_plugin.options import OptionError, check_dataset_paths, read_option_file
from losses_plugin.reproduction.grids import GRIDS
from losses_plugin.reproduction.panel import crop_panel
from losses_plugin.reproduction.locks import claimed
from losses_plugin.reproduction.divergence import diverged_seeds, loss_curve, spike_in_curve
from losses_plugin.reproduction.record import RECORD_FILE, read_record, record_seed, recorded_seed, updating_record
from losses_plugin.reproduction.report import bar_charts, markdown
from losses_plugin.reproduction.results import read_final_metrics, run_is_finished, validated_at
from losses_plugin.reproduction.seeds import seed_option_file, seeds_of

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def option_dir(scale):
    return os.path.join(ROOT, 'options', 'demo' if scale == 'demo' else '')


def option_path(run, scale):
    return os.path.join(option_dir(scale), f'{run.name}.yml')


def run_seeds(grid, scale, count):
    """[(run, seed, its option file, the file's options)] in grid order, each run's seeds together."""
    out = []
    for run in grid.runs:
        path = option_path(run, scale)
        opt = read_option_file(path)
        out += [(run, seed, path, opt) for seed in seeds_of(opt, count)]
    return out


def select_runs(grid, names):
    """The grid with only the runs named (option-file stems), in grid order; all of it when ``names`` is empty."""
    if not names:
        return grid
    known = [run.name for run in grid.runs]
    unknown = [name for name in names if name not in known]
    if unknown:
        raise SystemExit(f'reproduce.py: --runs: {", ".join(unknown)} not in the {grid.key} grid, whose runs are '
                         f'{", ".join(known)}')
    return replace(grid, runs=tuple(run for run in grid.runs if run.name in names))


def train_demo_runs(grid, seeds, force, out_dir):
    """Trains every seed not finished yet, here (experiments/, tb_logger/) or in ``out_dir``'s seeds.json, and not
    claimed by another reproduce.py training it now; each seed enters seeds.json as it finishes, so an interrupted
    grid keeps what it trained."""
    os.makedirs(out_dir, exist_ok=True)
    for run, seed, path, opt in tqdm(run_seeds(grid, 'demo', seeds), desc=f'{grid.key} demo runs', unit='run'):
        with claimed(seed.experiment) as ours:
            if ours:
                wait_for_weights_it_loads(seed, opt)
                train_demo_seed(seed, path, opt, force, out_dir)
            else:
                tqdm.write(f'{seed.experiment}: being trained by another reproduce.py, skipped')


def wait_for_weights_it_loads(seed, opt):
    """Waits while another reproduce.py trains a run whose weights this seed loads (``experiments/<run>/models/``
    in its options: UDL's stage 2 reads stage 1's estimator), so that it starts from the finished weights."""
    for experiment in sorted(set(re.findall(r'experiments/([^/\s]+)/models/', json.dumps(opt)))):
        with claimed(experiment) as free:
            if free:
                continue
        tqdm.write(f'{seed.experiment}: waiting for another reproduce.py to finish {experiment}, whose weights it '
                   'loads')
        with claimed(experiment, wait=True):
            pass


def train_demo_seed(seed, path, opt, force, out_dir):
    total_iter = opt['train']['total_iter']
    recorded = recorded_seed(read_record(out_dir), seed.experiment, total_iter)
    if not force and recorded:
        tqdm.write(f'{seed.experiment}: recorded in {os.path.join(out_dir, RECORD_FILE)} '
                   f'({recorded["recorded"]}), skipped (--force reruns it)')
        return
    threads = None
    if not force and run_is_finished('.', seed.experiment, total_iter):
        tqdm.write(f'{seed.experiment}: finished earlier, skipped (--force reruns it)')
    else:
        threads = torch.get_num_threads()  # the child inherits OMP_NUM_THREADS: its count is ours
        command = [sys.executable, '-m', 'losses_plugin', 'train', '-opt', seed_option_file(path, opt, seed)]
        command += [] if force else ['--auto_resume']
        tqdm.write(f'{seed.experiment}: {" ".join(command)}')
        if subprocess.run(command).returncode != 0:
            raise SystemExit(f'{seed.experiment} failed; its log is in experiments/{seed.experiment}/')
    metrics = read_final_metrics(os.path.join('tb_logger', seed.experiment))
    if validated_at(metrics, total_iter):
        spike = spike_in_curve(loss_curve(os.path.join('tb_logger', seed.experiment)))
        with updating_record(out_dir) as record:
            record_seed(record, seed.experiment, metrics, total_iter, threads, spike)


def full_runs(grid, seeds, launch, nproc):
    commands = []
    for run, seed, path, opt in run_seeds(grid, 'full', seeds):
        try:
            check_dataset_paths(opt)
        except OptionError as err:
            raise SystemExit(f'reproduce.py: {run.name}: {err}') from None
        commands.append(['torchrun', f'--nproc_per_node={nproc}', '-m', 'losses_plugin', 'train', '-opt',
                         os.path.relpath(seed_option_file(path, opt, seed)), '--launcher', 'pytorch', '--auto_resume'])
    for command in commands:
        print(' '.join(command))
        if launch and subprocess.run(command).returncode != 0:
            raise SystemExit(f'{command[-4]} failed')


def collect(grid, scale, seeds, record):
    """({run name: [final metrics of each finished seed]}, [experiments not finished], [experiments read from the
    record], {run name: {seed index: (experiment, why it diverged)}}): a seed counts only once it validated at
    total_iter, so a run stopped part-way never enters a table or a comparison. A seed whose TensorBoard log is
    gone is taken from ``record`` (``seeds.json`` of an earlier report) when it was recorded for the same
    total_iter; a seed with a finished log updates ``record``."""
    results, unfinished, recorded, spikes = {}, [], [], {}
    for run, seed, _, opt in run_seeds(grid, scale, seeds):
        total_iter = opt['train']['total_iter']
        metrics = read_final_metrics(os.path.join('tb_logger', seed.experiment))
        if validated_at(metrics, total_iter):
            spike = spike_in_curve(loss_curve(os.path.join('tb_logger', seed.experiment)))
            record_seed(record, seed.experiment, metrics, total_iter, loss_spike=spike)
        elif entry := recorded_seed(record, seed.experiment, total_iter):
            metrics, spike = entry['metrics'], entry.get('loss_spike')
            recorded.append(seed.experiment)
        else:
            unfinished.append(seed.experiment)
            continue
        results.setdefault(run.name, []).append(metrics)
        spikes.setdefault(run.name, []).append((seed.experiment, spike))
    diverged = {}
    for name, per_seed in results.items():
        reasons = diverged_seeds(per_seed, [spike for _, spike in spikes[name]])
        if reasons:
            diverged[name] = {i: (spikes[name][i][0], reason) for i, reason in reasons.items()}
    return results, unfinished, recorded, diverged


def write_report(grid, scale, seeds, out_dir):
    os.makedirs(out_dir, exist_ok=True)
    with updating_record(out_dir) as record:
        results, unfinished, recorded, diverged = collect(grid, scale, seeds, record)
    figures = bar_charts(grid, results, out_dir) if results else []
    if crop_panel(grid, option_dir(scale), 'experiments', os.path.join(out_dir, 'panel.jpg')):
        figures.append('panel.jpg')
    with open(os.path.join(out_dir, 'report.md'), 'w') as f:
        f.write(markdown(grid, scale, results, figures, seeds, unfinished,
                         {name: record[name] for name in recorded}, diverged))
    print(f'wrote {os.path.join(out_dir, "report.md")} ({len(results)} of {len(grid.runs)} runs have results, '
          f'{sum(map(len, results.values()))} of {len(grid.runs) * seeds} seeds'
          + (f', {len(recorded)} of them from {os.path.join(out_dir, RECORD_FILE)}' if recorded else '') + ')')


def main():
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('--paper', required=True, choices=sorted(GRIDS))
    parser.add_argument('--scale', required=True, choices=('demo', 'full'))
    parser.add_argument('--seeds', type=int, default=1,
                        help='train and report every run with this many seeds (seed 1: the option file\'s own)')
    parser.add_argument('--force', action='store_true', help='rerun finished demo runs')
    parser.add_argument('--launch', action='store_true', help='full scale: run the torchrun commands')
    parser.add_argument('--nproc', type=int, default=8, help='full scale: processes (GPUs) per run')
    parser.add_argument('--runs', nargs='+', default=[], metavar='NAME',
                        help='train only these runs (option file names); the report covers the whole grid')
    parser.add_argument('--report-only', action='store_true', help='collect and report without training')
    parser.add_argument('--out', help='report folder (default results/<paper>/<scale>)')
    args = parser.parse_args()
    if args.seeds < 1:
        parser.error(f'--seeds must be at least 1, got {args.seeds}')
    grid = GRIDS[args.paper]
    out_dir = args.out or os.path.join('results', args.paper, args.scale)
    selected = select_runs(grid, args.runs)
    if not args.report_only:
        if args.scale == 'demo':
            train_demo_runs(selected, args.seeds, args.force, out_dir)
        else:
            full_runs(selected, args.seeds, args.launch, args.nproc)
    write_report(grid, args.scale, args.seeds, out_dir)


if __name__ == '__main__':
    main()
