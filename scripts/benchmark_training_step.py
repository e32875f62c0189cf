"""Cost of one training iteration of our models relative to BasicSR's SRModel + L1Loss with the
same backbone and batch: median of repeated iterations, timed round-robin (each round runs every
model once, so a slow spell of the machine hits all alike). Usage:

    python scripts/benchmark_training_step.py [--batch 16 --lr-size 32 --repeats 10 --device cpu --json out.json]
        [--precisions float32 bfloat16]

The default is the issues' reference setting: EDSR (64 features, 16 blocks) x4, batch 16 of 32x32 LR.
Each model is timed in each precision (``train.amp``); ratios compare with SRModel + L1Loss in the same
precision, and bfloat16 with the same model in float32. On CUDA the peak memory of a training step is
reported too.
"""
import argparse
import copy
import json
import statistics
import time

import losses_plugin  # noqa: F401  (first: patches BasicSR and registers our classes)

import torch
from basicsr.models import build_model

EDSR = {'type': 'EDSR', 'num_in_ch': 3, 'num_out_ch': 3, 'num_feat': 64, 'num_block': 16, 'upscale': 4,
        'res_scale': 1, 'img_range': 255., 'rgb_mean': [0.4488, 0.4371, 0.4040]}
ADAM = {'type': 'Adam', 'lr': 1e-4, 'betas': [0.9, 0.99]}
TLW = {'model_type': 'TLWModel', 'network_w': {'type': 'TLWWeightingNet'},
       'train': {'pixel_opt': {'type': 'TLWLoss'}, 'optim_w': {'type': 'Adam', 'lr': 1e-4, 'betas': [0.5, 0.999]},
                 'tlw': {'judge': {'type': 'ms_ssim'}, 'iters_per_epoch': 1}}}

# name -> (model options merged into the base, note); later models add a row here
MODELS = {
    'SRModel + L1Loss': ({'model_type': 'SRModel', 'train': {'pixel_opt': {'type': 'L1Loss'}}}, 'the baseline'),
    'TLWModel (L1, ms_ssim judge)': (TLW, 'weighting net of 64 features, as the paper'),
    'TLWModel (L1, ms_ssim judge, 32-feature weighting net)': (
        dict(TLW, network_w={'type': 'TLWWeightingNet', 'num_feat': 32}), 'a lighter weighting net'),
    'TLWModel (L1, l1 judge)': (dict(TLW, train=dict(TLW['train'], tlw={'judge': {'type': 'l1'}, 'iters_per_epoch': 1})),
                                'the judge\'s share'),
    'UDLModel (stage esu)': ({'model_type': 'UDLModel', 'network_g': {'type': 'UncertaintySRNet', 'backbone': EDSR},
                              'train': {'pixel_opt': {'type': 'UDLLoss', 'stage': 'esu'}}}, 'backbone + head'),
    'FGDModel (dynamic areas 3/5/7)': ({'model_type': 'FGDModel', 'network_g': {'type': 'FGDNet', 'backbone': EDSR},
                                        'train': {'pixel_opt': {'type': 'FineGrainedDynamicLoss'}}},
                                       'bin head + Class-Module'),
    'FGDModel (static area 5)': ({'model_type': 'FGDModel',
                                  'network_g': {'type': 'FGDNet', 'backbone': EDSR, 'area_sizes': [5]},
                                  'train': {'pixel_opt': {'type': 'FineGrainedDynamicLoss'}}}, 'bin head only'),
}


def merged(base, extra):
    """``base`` updated by ``extra``, recursively; a dict with a 'type' (a network, a loss) replaces the old one."""
    out = copy.deepcopy(base)
    for key, value in extra.items():
        nested = isinstance(value, dict) and isinstance(out.get(key), dict) and 'type' not in value
        out[key] = merged(out[key], value) if nested else copy.deepcopy(value)
    return out


def model_options(extra, device, precision):
    base = {'name': 'benchmark', 'model_type': 'SRModel', 'scale': 4, 'num_gpu': 1 if device == 'cuda' else 0,
            'is_train': True, 'dist': False, 'rank': 0, 'world_size': 1, 'network_g': EDSR,
            'path': {'pretrain_network_g': None, 'strict_load_g': True, 'resume_state': None},
            'train': {'ema_decay': 0, 'optim_g': ADAM, 'scheduler': {'type': 'MultiStepLR', 'milestones': [10 ** 9],
                                                                      'gamma': 0.5}},
            'logger': {}}
    if precision != 'float32':
        base['train']['amp'] = {'dtype': precision}
    return merged(base, extra)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('--batch', type=int, default=16)
    parser.add_argument('--lr-size', type=int, default=32)
    parser.add_argument('--repeats', type=int, default=10)
    parser.add_argument('--warmup', type=int, default=2)
    parser.add_argument('--device', default='cuda' if torch.cuda.is_available() else 'cpu')
    parser.add_argument('--only', nargs='*', help='model names to time (default: all)')
    parser.add_argument('--precisions', nargs='+', default=['float32', 'bfloat16'], choices=['float32', 'bfloat16',
                                                                                             'float16'])
    parser.add_argument('--json', help='also write the results here')
    args = parser.parse_args()

    torch.manual_seed(0)
    names = [n for n in MODELS if not args.only or n in args.only or n == 'SRModel + L1Loss']
    models = {(name, precision): build_model(model_options(MODELS[name][0], args.device, precision))
              for name in names for precision in args.precisions}
    lq = torch.rand(args.batch, 3, args.lr_size, args.lr_size)
    gt = torch.rand(args.batch, 3, 4 * args.lr_size, 4 * args.lr_size)
    for model in models.values():
        model.feed_data({'lq': lq, 'gt': gt})

    def timed(function):
        if args.device == 'cuda':
            torch.cuda.synchronize()
        start = time.perf_counter()
        function()
        if args.device == 'cuda':
            torch.cuda.synchronize()
        return time.perf_counter() - start

    @torch.no_grad()
    def infer(model):
        net = model.get_bare_model(model.net_g).eval()
        with model.step_guard.autocast():
            net(model.lq)
        net.train()

    times = {key: {'train': [], 'test': []} for key in models}
    peak = {}
    for round_ in range(args.warmup + args.repeats):
        for key, model in models.items():
            if args.device == 'cuda':
                torch.cuda.reset_peak_memory_stats()
            elapsed = {'train': timed(lambda: model.optimize_parameters(1)), 'test': timed(lambda: infer(model))}
            if args.device == 'cuda':
                peak[key] = torch.cuda.max_memory_allocated() / 2 ** 20
            if round_ >= args.warmup:
                for kind in elapsed:
                    times[key][kind].append(elapsed[kind])
        print(f'round {round_ + 1}/{args.warmup + args.repeats}', flush=True)
    medians = {key: {kind: statistics.median(values) for kind, values in kinds.items()}
               for key, kinds in times.items()}
    print(f'\nEDSR 64x16 x4, batch {args.batch} of {args.lr_size}x{args.lr_size} LR, {args.device}, '
          f'median of {args.repeats} iterations\n')
    print('| model | precision | ms per iteration | x SRModel + L1Loss | x its float32 | inference ms | x EDSR '
          '| peak MiB | note |\n| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | --- |')
    results = {}
    for (name, precision), median in medians.items():
        base = medians['SRModel + L1Loss', precision]
        own32 = medians.get((name, 'float32'))
        row = {'ms': 1000 * median['train'], 'ratio': median['train'] / base['train'],
               'vs_float32': median['train'] / own32['train'] if own32 else None,
               'inference_ms': 1000 * median['test'], 'inference_ratio': median['test'] / base['test'],
               'peak_mib': peak.get((name, precision))}
        results[f'{name} [{precision}]'] = row
        vs32 = f"{row['vs_float32']:.2f}" if row['vs_float32'] else '-'
        memory = f"{row['peak_mib']:.0f}" if row['peak_mib'] else '-'
        print(f"| {name} | {precision} | {row['ms']:.0f} | {row['ratio']:.2f} | {vs32} | {row['inference_ms']:.0f} | "
              f"{row['inference_ratio']:.2f} | {memory} | {MODELS[name][1]} |")
    if args.json:
        with open(args.json, 'w') as f:
            json.dump(results, f, indent=2)


if __name__ == '__main__':
    main()
