"""``report.md`` and figures for one paper's grid: every run's final validation metrics beside the
paper's numbers, each method against its baseline with the direction the paper claims, bar charts
per metric, and a crop panel of one validation image from every run."""
import datetime
import os

import numpy as np

SCALE_NOTES = {
    'demo': 'At demo scale (600 CPU iterations, two small validation images) our numbers are not comparable with '
            'the paper\'s in value, only in direction.',
    'full': 'At full scale values compare with the paper\'s where the training data, test set and metric settings '
            'are the paper\'s (each paper\'s README section says where they differ).',
}
LOWER_IS_BETTER = {'niqe', 'rmse', 'gmsd', 'l1_1000', 'l2_1000', 'lpips'}


def metric_rows(grid, results):
    """[(run, dataset, {metric: value}, iteration)] for the runs with results, in grid order."""
    rows = []
    for run in grid.runs:
        for dataset, metrics in sorted(results.get(run.name, {}).items()):
            rows.append((run, dataset, {m: v for m, (v, _) in metrics.items()}, max(i for _, i in metrics.values())))
    return rows


def comparisons(grid, results):
    """[(method run, baseline run, dataset, metric, our delta, paper delta or None, verdict)] on the claimed metrics.

    Verdict: 'as claimed' when our delta has the direction the paper claims, 'opposite' otherwise.
    """
    by_name = {run.name: run for run in grid.runs}
    out = []
    for run in grid.runs:
        base = by_name.get(run.baseline)
        if base is None or run.name not in results or base.name not in results:
            continue
        for dataset, metrics in sorted(results[run.name].items()):
            base_metrics = results[base.name].get(dataset, {})
            for metric, direction in grid.claims.items():
                if metric not in metrics or metric not in base_metrics:
                    continue
                ours = metrics[metric][0] - base_metrics[metric][0]
                paper_base = base.paper if run.paper_baseline is None else run.paper_baseline
                paper = (run.paper[metric] - paper_base[metric]
                         if metric in run.paper and metric in paper_base else None)
                better = ours > 0 if direction == 'higher' else ours < 0
                out.append((run, base, dataset, metric, ours, paper, 'as claimed' if better else 'opposite'))
    return out


def fmt(value):
    if value is None:
        return ''
    return f'{value:.4f}' if abs(value) < 10 else f'{value:.2f}'


def markdown(grid, scale, results, figures):
    rows = metric_rows(grid, results)
    metrics = sorted({m for _, _, values, _ in rows for m in values})
    lines = [f'# {grid.title}: {scale} scale', '',
             f'Written by `python scripts/reproduce.py --paper {grid.key} --scale {scale}` on '
             f'{datetime.date.today().isoformat()}. Our numbers are the last validation BasicSR logged for each '
             f'run; the paper\'s are from {grid.source}. ' + SCALE_NOTES[scale], '']
    if not rows:
        return '\n'.join(lines + ['No finished runs yet.', ''])
    header = ['run', 'validation set', 'iteration']
    for m in metrics:
        header += [m, f'{m} (paper)', f'{m} ours - paper']
    lines += ['| ' + ' | '.join(header) + ' |',
              '| ' + ' | '.join(['---', '---', '---:'] + ['---:'] * 3 * len(metrics)) + ' |']
    for run, dataset, values, iteration in rows:
        cells = [run.label, dataset, str(iteration)]
        for m in metrics:
            ours, paper = values.get(m), run.paper.get(m)
            cells += [fmt(ours), fmt(paper), fmt(ours - paper) if ours is not None and paper is not None else '']
        lines.append('| ' + ' | '.join(cells) + ' |')
    pairs = comparisons(grid, results)
    if pairs:
        claims = ', '.join(f'{m} {d}' for m, d in grid.claims.items())
        lines += ['', f'## Each method against its baseline (the paper claims: {claims})', '',
                  'Verdict: does our difference go the way the paper claims; last column: does it have the sign '
                  'of the paper\'s own difference for that row.', '',
                  '| method | baseline | set | metric | ours: method - baseline | paper: method - baseline | verdict '
                  '| same sign as the paper\'s row |',
                  '| --- | --- | --- | --- | ---: | ---: | --- | --- |']
        for run, base, dataset, metric, ours, paper, verdict in pairs:
            same = '' if paper is None else ('yes' if (ours > 0) == (paper > 0) else 'no')
            lines.append(f'| {run.label} | {base.label} | {dataset} | {metric} | {ours:+.4f} | '
                         f'{"" if paper is None else f"{paper:+.4f}"} | {verdict} | {same} |')
        held = sum(p[-1] == 'as claimed' for p in pairs)
        lines += ['', f'{held} of {len(pairs)} comparisons go the way the paper claims.']
    if figures:
        lines += ['', '## Figures', ''] + [f'![{os.path.splitext(f)[0]}]({f})' for f in figures]
    return '\n'.join(lines) + '\n'


def bar_charts(grid, results, out_dir):
    """One PNG per metric: every run's value (first validation set), the baseline runs grey."""
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
        ax.bar(range(len(entries)), [v for _, v in entries], color=colours)
        values = np.array([v for _, v in entries])
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
