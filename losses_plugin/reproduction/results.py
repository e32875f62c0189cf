"""The validation metrics BasicSR logged for a run, read from its TensorBoard event files
(``tb_logger/<run>/``, scalars ``metrics/<dataset>/<metric>``): structured, unlike the text log."""
import glob
import os

from tensorboard.backend.event_processing.event_accumulator import SCALARS, EventAccumulator


def read_final_metrics(tb_dir):
    """``{dataset: {metric: (value, iteration)}}`` at the last logged iteration of each scalar; {} if none."""
    if not glob.glob(os.path.join(tb_dir, 'events.out.tfevents.*')):
        return {}
    events = EventAccumulator(tb_dir, size_guidance={SCALARS: 0}).Reload()
    metrics = {}
    for tag in events.Tags()['scalars']:
        parts = tag.split('/')
        if len(parts) != 3 or parts[0] != 'metrics':
            continue
        last = max(events.Scalars(tag), key=lambda e: (e.step, e.wall_time))
        metrics.setdefault(parts[1], {})[parts[2]] = (last.value, last.step)
    return metrics


def validated_at(metrics, total_iter):
    """Whether ``read_final_metrics``' result holds a validation at ``total_iter`` (the run's last)."""
    return any(step >= total_iter for per_set in metrics.values() for _, step in per_set.values())


def run_is_finished(root, run_name, total_iter):
    """A run is done when its latest weights exist and a validation at ``total_iter`` was logged."""
    if not os.path.isfile(os.path.join(root, 'experiments', run_name, 'models', 'net_g_latest.pth')):
        return False
    return validated_at(read_final_metrics(os.path.join(root, 'tb_logger', run_name)), total_iter)
