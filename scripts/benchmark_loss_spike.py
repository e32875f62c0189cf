"""Cost of ``train.loss_spike`` (detection every iteration, in-memory snapshots) against the training step it
watches, in the same run. Usage:

    python scripts/benchmark_loss_spike.py [--batch 16 --lr-size 32 --repeats 10 --device cpu] [--markdown docs/benchmark_loss_spike.md]

EDSR 64x16 x4 (SRModel + L1Loss, Adam). Round-robin: each round times one iteration (``update_learning_rate`` +
``optimize_parameters``) without the policy and one with it (detection, no snapshot), one detection alone, one
snapshot (every network and optimiser state copied to the CPU) and one restore; medians with min-max. The policy's share of a step is
(detection + snapshot / snapshot_every) / step, for the default ``snapshot_every`` (50) and for 1.
"""
import argparse
import statistics
import sys
import time

import losses_plugin  # noqa: F401  (first: patches BasicSR and registers our classes)

import torch
from basicsr.models import build_model

EDSR = {'type': 'EDSR', 'num_in_ch': 3, 'num_out_ch': 3, 'num_feat': 64, 'num_block': 16, 'upscale': 4,
        'res_scale': 1, 'img_range': 255., 'rgb_mean': [0.4488, 0.4371, 0.4040]}


def build(device, policy):
    train = {'ema_decay': 0, 'optim_g': {'type': 'Adam', 'lr': 1e-4, 'betas': [0.9, 0.99]},
             'pixel_opt': {'type': 'L1Loss'}, 'scheduler': {'type': 'MultiStepLR', 'milestones': [10 ** 6],
                                                            'gamma': 0.5}}
    if policy:
        train['loss_spike'] = {'warmup': 0, 'window': 5}
    return build_model({'name': 'bench', 'model_type': 'SRModel', 'scale': 4, 'num_gpu': 0 if device == 'cpu' else 1,
                        'is_train': True, 'dist': False, 'rank': 0, 'world_size': 1, 'network_g': dict(EDSR),
                        'path': {'experiments_root': '.', 'models': '.', 'training_states': '.'}, 'train': train})


def main():
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('--batch', type=int, default=16)
    parser.add_argument('--lr-size', type=int, default=32)
    parser.add_argument('--repeats', type=int, default=10)
    parser.add_argument('--warmup', type=int, default=2)
    parser.add_argument('--device', default='cuda' if torch.cuda.is_available() else 'cpu')
    parser.add_argument('--markdown', help='also write the table as a Markdown page')
    args = parser.parse_args()

    torch.manual_seed(0)
    plain, watched = build(args.device, False), build(args.device, True)
    batch = {'lq': torch.rand(args.batch, 3, args.lr_size, args.lr_size, device=args.device),
             'gt': torch.rand(args.batch, 3, 4 * args.lr_size, 4 * args.lr_size, device=args.device)}
    policy = watched.step_guard.loss_spike
    policy.snapshot_every = 10 ** 9  # timed on their own below

    def synchronize():
        if args.device == 'cuda':
            torch.cuda.synchronize()

    def timed(function):
        synchronize()
        start = time.perf_counter()
        function()
        synchronize()
        return time.perf_counter() - start

    def iteration(model, i):
        model.update_learning_rate(i)
        model.feed_data(batch)
        model.optimize_parameters(i)

    times = {'step without the policy': [], 'step with the policy': [], 'detection (one observe call)': [],
             'snapshot': [], 'restore': []}
    for round_ in range(args.warmup + args.repeats):
        i = round_ + 2
        elapsed = {'step without the policy': timed(lambda: iteration(plain, i)),
                   'step with the policy': timed(lambda: iteration(watched, i)),
                   'detection (one observe call)': timed(lambda: policy.observe(i + 1))}
        snapshot = []
        elapsed['snapshot'] = timed(lambda: snapshot.append(policy._capture()))
        elapsed['restore'] = timed(lambda: policy._load(snapshot[0]))
        if round_ >= args.warmup:
            for key, value in elapsed.items():
                times[key].append(value)
        print(f'round {round_ + 1}/{args.warmup + args.repeats}', file=sys.stderr, flush=True)

    median = {key: statistics.median(values) for key, values in times.items()}
    step = median['step without the policy']
    detection = median['detection (one observe call)']
    lines = [f'train.loss_spike: EDSR 64x16 x4, batch {args.batch} of {args.lr_size}x{args.lr_size} LR, {args.device}, '
             f'{torch.get_num_threads()} threads, torch {torch.__version__}; median (min-max) of {args.repeats} '
             f'round-robin rounds after {args.warmup} warm-up.', '', '| what | ms | x the plain step |',
             '| --- | ---: | ---: |']
    for key, values in times.items():
        lines.append(f'| {key} | {median[key] * 1e3:.3f} ({min(values) * 1e3:.3f}-{max(values) * 1e3:.3f}) | '
                     f'{median[key] / step:.4f} |')
    for every in (50, 1):
        share = (detection + median['snapshot'] / every) / step
        lines.append(f'| policy per iteration, snapshot_every {every} | '
                     f'{(detection + median["snapshot"] / every) * 1e3:.3f} | {share:.4f} |')
    text = '\n'.join(lines)
    print(text)
    if args.markdown:
        with open(args.markdown, 'w') as f:
            f.write(f'# Cost of the loss-spike policy\n\nWritten by `python scripts/benchmark_loss_spike.py --markdown '
                    f'{args.markdown}`.\n\n{text}\n')


if __name__ == '__main__':
    main()
