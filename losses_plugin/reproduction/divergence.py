"""Seeds that diverged, so that one blown-up run does not decide a verdict.

A seed whose loss blew up gives its cell a huge spread and makes every comparison of that cell "within noise".
A seed counts as **diverged** when

- its training loss spiked: the watched total of its logged losses (TensorBoard ``losses/l_*``, what BasicSR's
  MessageLogger writes every ``print_freq`` iterations) has a moving mean over :data:`LOG_WINDOW` logged points
  above :data:`FACTOR` x the lowest such mean after the first fifth of training (the rule of
  ``train.loss_spike``, :class:`losses_plugin.models.loss_spike.SpikeDetector`, on the logged points); or
- its final PSNR on a validation set lies more than :data:`PSNR_DROP_DB` below every other seed of its cell
  (with two seeds: below the other one), a gap no demo cell's seeds show (their spreads are 0.03-2 dB).
"""
import glob
import os
from typing import Dict, List, Optional

from losses_plugin.models.loss_spike import SpikeDetector, watched_loss

LOG_WINDOW = 3  # logged points: 150 iterations at the demo's print_freq of 50
FACTOR = 3.0
PSNR_DROP_DB = 3.0


def loss_curve(tb_dir: str) -> Dict[int, dict]:
    """``{iteration: {loss name: value}}`` of the losses a run logged to TensorBoard; {} without a log."""
    if not glob.glob(os.path.join(tb_dir, 'events.out.tfevents.*')):
        return {}
    from tensorboard.backend.event_processing.event_accumulator import SCALARS, EventAccumulator

    events = EventAccumulator(tb_dir, size_guidance={SCALARS: 0}).Reload()
    curve = {}
    for tag in events.Tags()['scalars']:
        if tag.startswith('losses/'):
            for event in events.Scalars(tag):
                curve.setdefault(event.step, {})[tag.split('/', 1)[1]] = event.value
    return curve


def spike_in_curve(curve: Dict[int, dict]) -> Optional[int]:
    """The first logged iteration at which the loss curve counts as spiked, or None."""
    if not curve:
        return None
    steps = sorted(curve)
    detector = SpikeDetector(LOG_WINDOW, FACTOR, warmup=steps[-1] // 5)
    for step in steps:
        if detector.add(step, watched_loss(curve[step], 'total')) is not None:
            return step
    return None


def diverged_seeds(per_seed: List[dict], spikes: List[Optional[int]]) -> Dict[int, str]:
    """``{index: reason}`` of the diverged seeds of one cell.

    Args:
        per_seed (list[dict]): each seed's final metrics, ``{dataset: {metric: (value, iteration)}}``.
        spikes (list[int | None]): each seed's :func:`spike_in_curve` (None: no spike, or no log to read).
    """
    reasons = {}
    for index, spike in enumerate(spikes):
        if spike is not None:
            reasons[index] = f'its training loss spiked at iteration {spike}'
    for dataset in sorted({d for seed in per_seed for d in seed}):
        values = {i: seed[dataset]['psnr'][0] for i, seed in enumerate(per_seed) if 'psnr' in seed.get(dataset, {})}
        for index, value in values.items():
            others = [v for i, v in values.items() if i != index]
            if others and value < min(others) - PSNR_DROP_DB:
                shown = ', '.join(f'{v:.2f}' for v in others)
                reasons.setdefault(index, f'its {dataset} PSNR, {value:.2f} dB, is more than {PSNR_DROP_DB:g} dB '
                                          f'below its cell\'s other seeds ({shown})')
    return reasons
