"""``report.md`` and figures for one paper's grid: every run's final validation metrics (mean ± std over
its seeds) beside the paper's numbers, each method against its baseline with the direction the paper
claims and whether the difference exceeds the seed spread, and bar charts per metric."""
import datetime
import os
from dataclasses import dataclass

import numpy as np

SCALE_NOTES = {
    'demo': 'At demo scale (600 CPU iterations, two small validation images) our numbers are not comparable with '
            'the paper\'s in value, only in direction.',
    'full': 'At full scale values compare with the paper\'s where the training data, test set and metric settings '
            'are the paper\'s (each paper\'s page in docs/papers/ says where they differ).',
}
LOWER_IS_BETTER = {'niqe', 'rmse', 'gmsd', 'l1_1000', 'l2_1000', 'lpips'}


NOISE_RULE = ('A difference between a method and its baseline is called **real** when |mean(method) - mean(baseline)| '
              'exceeds the larger of the two cells\' seed spreads (max - min of the metric over their seeds), '
              'and **within noise** otherwise. With 2 seeds a cell\'s spread is the gap between its two runs '
              '(sqrt(2) x the std shown), so a difference is real only when it is larger than either cell\'s own '
              'seed-to-seed change. A cell with one seed has no spread: its comparisons get no noise verdict.')


@dataclass(frozen=True)
class Stat:
    """One metric of one cell over its n seeds; ``std`` has n - 1 in the denominator."""
    mean: float
    std: float  # None with one seed
    low: float
    high: float
    n: int

    @property
    def spread(self):
        """max - min over the seeds; None with one seed (no noise estimate)."""
        return None if self.n == 1 else self.high - self.low

    def __str__(self):
        return fmt(self.mean) if self.std is None else f'{fmt(self.mean)} ± {fmt(self.std)}'


def summarise(values):
    """:class:`Stat` of one metric's values over seeds."""
    values = np.asarray(values, dtype=float)
    std = float(values.std(ddof=1)) if len(values) > 1 else None
    return Stat(float(values.mean()), std, float(values.min()), float(values.max()), len(values))


def aggregate(per_seed):
    """``{dataset: {metric: (Stat, iterations)}}`` from one cell's per-seed final metrics
    (``[{dataset: {metric: (value, iteration)}}]``); a metric counts the seeds that logged it."""
    out = {}
    for dataset in sorted({d for seed in per_seed for d in seed}):
        metrics = {m for seed in per_seed for m in seed.get(dataset, {})}
        for metric in sorted(metrics):
            logged = [seed[dataset][metric] for seed in per_seed if metric in seed.get(dataset, {})]
            out.setdefault(dataset, {})[metric] = (summarise([v for v, _ in logged]), sorted({i for _, i in logged}))
    return out


def noise_verdict(difference, method, baseline):
    """'real' | 'within noise' by :data:`NOISE_RULE` for two :class:`Stat`; 'one seed' when either has no spread."""
    if method.spread is None or baseline.spread is None:
        return 'one seed'
    return 'real' if abs(difference) > max(method.spread, baseline.spread) else 'within noise'


def metric_rows(grid, results):
    """[(run, dataset, {metric: Stat}, iterations)] for the runs with results, in grid order."""
    rows = []
    for run in grid.runs:
        for dataset, metrics in aggregate(results.get(run.name, [])).items():
            iterations = sorted({i for _, its in metrics.values() for i in its})
            rows.append((run, dataset, {m: stat for m, (stat, _) in metrics.items()}, iterations))
    return rows


@dataclass(frozen=True)
class Comparison:
    run: object
    base: object
    dataset: str
    metric: str
    ours: float  # mean(method) - mean(baseline)
    spread: float  # the larger of the two cells' seed spreads; None with one seed
    paper: float  # the paper's method - baseline for this row, or None
    direction: str  # 'as claimed' | 'opposite': the sign of ours against the paper's claim
    noise: str  # noise_verdict

    @property
    def measured(self):
        """Our measured effect beside the paper's claim, in words."""
        if self.noise == 'within noise':
            return 'no effect beyond noise'
        agreement = 'agrees' if self.direction == 'as claimed' else 'disagrees'
        return agreement if self.noise == 'real' else f'{agreement} (one seed: untested)'


def comparisons(grid, results):
    """[:class:`Comparison`] of every method with its baseline on the metrics whose direction the paper claims."""
    by_name = {run.name: run for run in grid.runs}
    out = []
    for run in grid.runs:
        base = by_name.get(run.baseline)
        if base is None or run.name not in results or base.name not in results:
            continue
        base_cells = aggregate(results[base.name])
        for dataset, metrics in aggregate(results[run.name]).items():
            base_metrics = base_cells.get(dataset, {})
            for metric, direction in grid.claims.items():
                if metric not in metrics or metric not in base_metrics:
                    continue
                method, baseline = metrics[metric][0], base_metrics[metric][0]
                ours = method.mean - baseline.mean
                paper_base = base.paper if run.paper_baseline is None else run.paper_baseline
                paper = (run.paper[metric] - paper_base[metric]
                         if metric in run.paper and metric in paper_base else None)
                better = ours > 0 if direction == 'higher' else ours < 0
                spread = None if method.spread is None or baseline.spread is None else max(method.spread,
                                                                                          baseline.spread)
                out.append(Comparison(run, base, dataset, metric, ours, spread, paper,
                                      'as claimed' if better else 'opposite', noise_verdict(ours, method, baseline)))
    return out


def per_method_lines(grid, pairs):
    """One line per method and validation set: each claimed metric's measured difference and verdict."""
    groups = {}
    for c in pairs:
        groups.setdefault((c.run.name, c.dataset), []).append(c)
    lines = []
    for group in groups.values():
        first = group[0]
        effects = '; '.join(f'{c.metric} {signed(c.ours)} (claim: {grid.claims[c.metric]}'
                            f'{"" if c.paper is None else f", paper {signed(c.paper)}"}): {c.measured}' for c in group)
        lines.append(f'- **{first.run.label}** vs {first.base.label} ({first.dataset}): {effects}.')
    return lines


def fmt(value):
    if value is None:
        return ''
    return f'{value:.4f}' if abs(value) < 10 else f'{value:.2f}'


def signed(value):
    return '' if value is None else f'{value:+.4f}'


def counted(n: int, singular: str, plural: str) -> str:
    """``n`` and the verb that agrees with it: counted(1, 'has', 'have') == '1 has'."""
    return f'{n} {singular if n == 1 else plural}'


def without_diverged(results, diverged):
    """``results`` less the diverged seeds (``{run name: {seed index: ...}}``)."""
    return {name: [seed for i, seed in enumerate(per_seed) if i not in diverged.get(name, {})]
            for name, per_seed in results.items()}


def _diverged_lines(grid, diverged, pairs, clean_pairs):
    """The diverged seeds, and the verdicts of the comparisons they take part in, without them."""
    labels = {run.name: run.label for run in grid.runs}
    lines = ['', '## Diverged seeds', '',
             'A seed whose training loss spiked, or whose final PSNR lies more than 3 dB below every other seed of its '
             'cell (`losses_plugin/reproduction/divergence.py`), is shown here and every comparison it takes part in '
             'is given again without it: a blown-up run makes its cell\'s spread huge and every difference "within '
             'noise".', '']
    lines += [f'- `{experiment}` ({labels.get(run, run)}): {reason}.' for run, seeds in diverged.items()
              for experiment, reason in seeds.values()]
    clean = {(c.run.name, c.dataset, c.metric): c for c in clean_pairs}
    touched = [c for c in pairs if c.run.name in diverged or c.base.name in diverged]
    if touched:
        lines += ['', '| method | baseline | set | metric | with every seed | without the diverged seeds |',
                  '| --- | --- | --- | --- | --- | --- |']
        for c in touched:
            other = clean.get((c.run.name, c.dataset, c.metric))
            without = 'no seed left' if other is None else (f'{signed(other.ours)} (spread {fmt(other.spread)}): '
                                                            f'{other.measured}')
            lines.append(f'| {c.run.label} | {c.base.label} | {c.dataset} | {c.metric} | {signed(c.ours)} (spread '
                         f'{fmt(c.spread)}): {c.measured} | {without} |')
    return lines


def markdown(grid, scale, results, figures, seeds=1, unfinished=(), recorded=None, diverged=None):
    """The report; ``unfinished``: experiments (seeds) not finished, named as left out of every table;
    ``recorded``: ``{experiment: record entry}`` of the seeds read from ``seeds.json`` (no log left here);
    ``diverged``: ``{run name: {seed index in results: (experiment, reason)}}``, shown with every verdict they
    touch given with and without them."""
    rows = metric_rows(grid, results)
    metrics = sorted({m for _, _, values, _ in rows for m in values})
    seed_text = ('one seed per run (the option file\'s manual_seed)' if seeds == 1 else
                 f'{seeds} seeds per run (seed 1: the option file\'s manual_seed; seed i: that + i - 1, experiment '
                 '`<name>_seed<k>`), each cell as mean ± std over its seeds')
    lines = [f'# {grid.title}: {scale} scale', '',
             f'Written by `python scripts/reproduce.py --paper {grid.key} --scale {scale} --seeds {seeds}` on '
             f'{datetime.date.today().isoformat()}: {seed_text}. Our numbers are the last validation BasicSR logged '
             f'for each run; the paper\'s are from {grid.source}. ' + SCALE_NOTES[scale], '']
    if unfinished:
        lines += [f'Not finished, so left out of every table and comparison ({len(unfinished)} of '
                  f'{len(grid.runs) * seeds} seeds): ' + ', '.join(f'`{name}`' for name in unfinished) + '.', '']
    if recorded:
        when = sorted({(e['recorded'], e['commit'] or 'no commit') for e in recorded.values()})
        lines += [f'Read from `seeds.json`, their logs gone ({len(recorded)} of {len(grid.runs) * seeds} seeds, '
                  'trained ' + ', '.join(f'{date} at {commit}' for date, commit in when) + '): '
                  + ', '.join(f'`{name}`' for name in recorded) + '.', '']
    if not rows:
        return '\n'.join(lines + ['No finished runs yet.', ''])
    header = ['run', 'validation set', 'seeds', 'iteration']
    for m in metrics:
        header += [m, f'{m} (paper)', f'{m} ours - paper']
    lines += ['| ' + ' | '.join(header) + ' |',
              '| ' + ' | '.join(['---', '---', '---:', '---:'] + ['---:'] * 3 * len(metrics)) + ' |']
    for run, dataset, values, iterations in rows:
        cells = [run.label, dataset, str(max(s.n for s in values.values())), '/'.join(map(str, iterations))]
        for m in metrics:
            ours, paper = values.get(m), run.paper.get(m)
            cells += ['' if ours is None else str(ours), fmt(paper),
                      fmt(ours.mean - paper) if ours is not None and paper is not None else '']
        lines.append('| ' + ' | '.join(cells) + ' |')
    pairs = comparisons(grid, results)
    if pairs:
        claims = ', '.join(f'{m} {d}' for m, d in grid.claims.items())
        lines += ['', f'## Each method against its baseline (the paper claims: {claims})', '',
                  NOISE_RULE, '',
                  'Columns: our difference of means and the seed spread it is judged against; the paper\'s own '
                  'difference for that row; whether our difference is real; our measured effect beside the '
                  'paper\'s claim (agrees: real and the claimed way; disagrees: real and the other way); whether '
                  'our difference has the sign of the paper\'s row.', '',
                  '| method | baseline | set | metric | paper claims | ours: method - baseline | seed spread '
                  '| paper: method - baseline | noise | measured vs claim | same sign as the paper\'s row |',
                  '| --- | --- | --- | --- | --- | ---: | ---: | ---: | --- | --- | --- |']
        for c in pairs:
            same = '' if c.paper is None else ('yes' if (c.ours > 0) == (c.paper > 0) else 'no')
            lines.append(f'| {c.run.label} | {c.base.label} | {c.dataset} | {c.metric} | {grid.claims[c.metric]} | '
                         f'{signed(c.ours)} | {fmt(c.spread)} | {signed(c.paper)} | {c.noise} | {c.measured} | '
                         f'{same} |')
        counts = {k: sum(c.measured == k for c in pairs) for k in ('agrees', 'disagrees', 'no effect beyond noise')}
        untested = len(pairs) - sum(counts.values())
        lines += ['', f'Of {len(pairs)} comparisons: {counted(counts["agrees"], "agrees", "agree")} with the paper\'s '
                  f'claim beyond seed noise, {counted(counts["disagrees"], "disagrees", "disagree")} beyond seed noise, '
                  f'{counted(counts["no effect beyond noise"], "is", "are")} within noise'
                  + (f', {counted(untested, "has", "have")} one seed (no noise verdict)' if untested else '') + '.']
        lines += ['', '## Measured direction beside the paper\'s claim, per method', '']
        lines += per_method_lines(grid, pairs)
    if diverged:
        lines += _diverged_lines(grid, diverged, pairs, comparisons(grid, without_diverged(results, diverged)))
    if figures:
        lines += ['', '## Figures', '', 'Bars: mean over seeds; whiskers: min and max over seeds.', '']
        lines += [f'![{os.path.splitext(f)[0]}]({f})' for f in figures]
    return '\n'.join(lines) + '\n'


def bar_charts(grid, results, out_dir):
    """One PNG per metric: every run's mean over seeds with min-max whiskers (first validation set), the
    baseline runs grey."""
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt

    rows = metric_rows(grid, results)
    first_set = {}
    for run, dataset, values, _ in rows:
        first_set.setdefault(run.name, (run, values))
    written = []
    for metric in sorted({m for _, _, values, _ in rows for m in values}):
        entries = [(run, values[metric]) for run, values in first_set.values() if metric in values]
        fig, ax = plt.subplots(figsize=(max(4, 0.55 * len(entries) + 2), 3.6))
        colours = ['#bbbbbb' if run.baseline is None else '#3b75af' for run, _ in entries]
        means = np.array([s.mean for _, s in entries])
        whiskers = np.array([[s.mean - s.low for _, s in entries], [s.high - s.mean for _, s in entries]])
        ax.bar(range(len(entries)), means, color=colours, yerr=whiskers, capsize=2, ecolor='#333333')
        values = np.array([v for _, s in entries for v in (s.low, s.high)])
        pad = (values.max() - values.min()) * 0.3 or abs(values.max()) * 0.01 or 1
        ax.set_ylim(values.min() - pad, values.max() + pad)
        ax.set_xticks(range(len(entries)))
        ax.set_xticklabels([run.label for run, _ in entries], rotation=40, ha='right', fontsize=7)
        better = 'lower is better' if metric in LOWER_IS_BETTER else 'higher is better'
        ax.set_title(f'{grid.title}: {metric} ({better}; grey = baselines)', fontsize=8)
        fig.tight_layout()
        name = f'{metric}.png'
        fig.savefig(os.path.join(out_dir, name), dpi=110)
        plt.close(fig)
        written.append(name)
    return written
