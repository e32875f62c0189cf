"""Cost of one training iteration of our models, and of each loss, relative to baselines timed in the same
run: round-robin repetitions (each round runs every case once, so a slow spell of the machine hits all
alike), medians with min-max. Usage:

    python scripts/benchmark_training_step.py [--batch 16 --lr-size 32 --repeats 10 --device cpu]
        [--precisions float32 bfloat16] [--no-rcan] [--markdown docs/benchmarks.md --png docs/benchmarks.png]

The reference setting is the issues': EDSR (64 features, 16 blocks) x4, batch 16 of 32x32 LR; TLW also on
RCAN x4 (the TLW paper's main network). Each model is timed in each precision (``train.amp``); its ratio
is to SRModel + L1Loss with the same backbone and precision. TLW is also compared with the sum of its
unavoidable parts, each timed in the same rounds. Memory: the peak allocated on CUDA; on a CPU the
tensors autograd saves for the backward pass (the activation memory a training step holds).
"""
import argparse
import copy
import json
import os
import statistics
import sys
import time

import losses_plugin  # noqa: F401  (first: patches BasicSR and registers our classes)

import torch
from basicsr.losses import build_loss
from basicsr.models import build_model

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from benchmark_losses import LOSSES, reference_losses, synchronize, time_loss  # noqa: E402

from losses_plugin.losses.tlw_loss import weight_criterion  # noqa: E402

EDSR = {'type': 'EDSR', 'num_in_ch': 3, 'num_out_ch': 3, 'num_feat': 64, 'num_block': 16, 'upscale': 4,
        'res_scale': 1, 'img_range': 255., 'rgb_mean': [0.4488, 0.4371, 0.4040]}
RCAN = {'type': 'RCAN', 'num_in_ch': 3, 'num_out_ch': 3, 'num_feat': 64, 'num_group': 10, 'num_block': 20,
        'squeeze_factor': 16, 'upscale': 4, 'res_scale': 1, 'img_range': 255., 'rgb_mean': [0.4488, 0.4371, 0.4040]}
ADAM = {'type': 'Adam', 'lr': 1e-4, 'betas': [0.9, 0.99]}
TLW = {'model_type': 'TLWModel', 'network_w': {'type': 'TLWWeightingNet'},
       'train': {'pixel_opt': {'type': 'TLWLoss'}, 'optim_w': {'type': 'Adam', 'lr': 1e-4, 'betas': [0.5, 0.999]},
                 'tlw': {'judge': {'type': 'ms_ssim'}, 'iters_per_epoch': 1}}}
L1 = {'model_type': 'SRModel', 'train': {'pixel_opt': {'type': 'L1Loss'}}}
BASELINE, RCAN_BASELINE = 'SRModel + L1Loss', 'SRModel + L1Loss (RCAN)'
TLW_PARTS = 'TLWModel (L1, ms_ssim judge)'  # the model whose parts are timed too

# name -> (model options merged into the base, its baseline, note); later models add a row here
MODELS = {
    BASELINE: (L1, BASELINE, 'the baseline'),
    TLW_PARTS: (TLW, BASELINE, 'weighting net of 64 features, as the paper'),
    'TLWModel (L1, ms_ssim judge, 32-feature weighting net)': (
        dict(TLW, network_w={'type': 'TLWWeightingNet', 'num_feat': 32}), BASELINE, 'a lighter weighting net'),
    'TLWModel (L1, l1 judge)': (dict(TLW, train=dict(TLW['train'], tlw={'judge': {'type': 'l1'}, 'iters_per_epoch': 1})),
                                BASELINE, 'the judge\'s share'),
    'UDLModel (stage esu)': ({'model_type': 'UDLModel', 'network_g': {'type': 'UncertaintySRNet', 'backbone': EDSR},
                              'train': {'pixel_opt': {'type': 'UDLLoss', 'stage': 'esu'}}}, BASELINE,
                             'backbone + 3-layer HR head'),
    'FGDModel (dynamic areas 3/5/7)': ({'model_type': 'FGDModel', 'network_g': {'type': 'FGDNet', 'backbone': EDSR},
                                        'train': {'pixel_opt': {'type': 'FineGrainedDynamicLoss'}}}, BASELINE,
                                       'bin head + Class-Module'),
    'FGDModel (static area 5)': ({'model_type': 'FGDModel',
                                  'network_g': {'type': 'FGDNet', 'backbone': EDSR, 'area_sizes': [5]},
                                  'train': {'pixel_opt': {'type': 'FineGrainedDynamicLoss'}}}, BASELINE,
                                 'bin head only'),
    RCAN_BASELINE: (dict(L1, network_g=RCAN), RCAN_BASELINE, 'RCAN x4 (10 groups x 20 blocks)'),
    'TLWModel (RCAN, L1, ms_ssim judge)': (dict(TLW, network_g=RCAN), RCAN_BASELINE, 'the paper\'s main network'),
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


class SavedTensors:
    """Bytes of the distinct tensors autograd saves for backward while active: a step's activation memory."""

    def __init__(self):
        self.storages = {}

    def __enter__(self):
        def pack(tensor):
            self.storages[tensor.untyped_storage().data_ptr()] = tensor.untyped_storage().nbytes()
            return tensor
        self.hooks = torch.autograd.graph.saved_tensors_hooks(pack, lambda tensor: tensor)
        self.hooks.__enter__()
        return self

    def __exit__(self, *exc):
        self.hooks.__exit__(*exc)

    @property
    def mib(self):
        return sum(self.storages.values()) / 2 ** 20


def tlw_parts(model):
    """The parts of a TLW iteration no implementation can skip, each a callable on the model's batch (Algorithm 1):
    the weighting net's forward+backward (E-step), its forward from the updated phi (M-step, no gradient), the
    judge on the E-step's pair with backward, the judge on the M-step's 2T images."""
    net_w, judge, gt = model.net_w, model.judge, model.gt
    with torch.no_grad():
        sr = model.net_g(model.lq)
    samples = model.get_bare_model(net_w).num_samples

    def net_w_forward_backward():
        model.optimizer_w.zero_grad()
        with model.step_guard.autocast():
            mean = net_w(gt, sr)
        mean.float().sum().backward()

    @torch.no_grad()
    def net_w_forward():
        with model.step_guard.autocast():
            net_w(gt, sr)

    def judge_forward_backward():
        w = torch.rand_like(gt, requires_grad=True)
        weight_criterion(judge, w, sr, gt).log().sum().backward()

    @torch.no_grad()
    def judge_forward():
        weight_criterion(judge, torch.rand(samples, *gt.shape), sr, gt)

    return {'net_w fwd+bwd': net_w_forward_backward, 'net_w fwd (M-step)': net_w_forward,
            'judge fwd+bwd (E-step)': judge_forward_backward, 'judge fwd (M-step)': judge_forward}


def main():
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('--batch', type=int, default=16)
    parser.add_argument('--lr-size', type=int, default=32)
    parser.add_argument('--repeats', type=int, default=10)
    parser.add_argument('--warmup', type=int, default=2)
    parser.add_argument('--loss-repeats', type=int, default=30)
    parser.add_argument('--reference-repeats', type=int, default=3, help='kornia takes seconds per call on a CPU')
    parser.add_argument('--device', default='cuda' if torch.cuda.is_available() else 'cpu')
    parser.add_argument('--only', nargs='*', help='model names to time (default: all)')
    parser.add_argument('--no-rcan', action='store_true', help='skip the RCAN rows (the slowest)')
    parser.add_argument('--no-losses', action='store_true', help='skip the loss table')
    parser.add_argument('--precisions', nargs='+', default=['float32', 'bfloat16'],
                        choices=['float32', 'bfloat16', 'float16'])
    parser.add_argument('--json', help='also write the results here')
    parser.add_argument('--markdown', help='also write the tables as a Markdown page (e.g. docs/benchmarks.md)')
    parser.add_argument('--png', help='also draw the ratios as a bar chart (e.g. docs/benchmarks.png)')
    args = parser.parse_args()

    torch.manual_seed(0)
    names = [n for n in MODELS if (not args.only or n in args.only or n == MODELS[n][1] or n == BASELINE)
             and not (args.no_rcan and 'RCAN' in n)]
    names = [n for n in names if MODELS[n][1] in names]
    models = {}
    for name in names:
        for precision in args.precisions:
            models[name, precision] = build_model(model_options(MODELS[name][0], args.device, precision))
            print(f'built {name} [{precision}]', flush=True)
    lq = torch.rand(args.batch, 3, args.lr_size, args.lr_size, device=args.device)
    gt = torch.rand(args.batch, 3, 4 * args.lr_size, 4 * args.lr_size, device=args.device)
    for model in models.values():
        model.feed_data({'lq': lq, 'gt': gt})
    parts = {(f'{name} :: {part}', precision): fn for (name, precision), model in models.items()
             if name == TLW_PARTS for part, fn in tlw_parts(model).items()}

    device = torch.device(args.device)

    def timed(function):
        synchronize(device)
        start = time.perf_counter()
        function()
        synchronize(device)
        return time.perf_counter() - start

    @torch.no_grad()
    def infer(model):
        net = model.get_bare_model(model.net_g).eval()
        with model.step_guard.autocast():
            net(model.lq)
        net.train()

    times = {key: {'train': [], 'test': []} for key in models}
    times.update({key: {'train': []} for key in parts})
    memory = {}
    rounds = args.warmup + args.repeats
    for round_ in range(rounds):
        for key, model in models.items():
            if args.device == 'cuda':
                torch.cuda.reset_peak_memory_stats()
            with SavedTensors() as saved:
                elapsed = {'train': timed(lambda: model.optimize_parameters(1))}
            memory[key] = torch.cuda.max_memory_allocated() / 2 ** 20 if args.device == 'cuda' else saved.mib
            elapsed['test'] = timed(lambda: infer(model))
            if round_ >= args.warmup:
                for kind in elapsed:
                    times[key][kind].append(elapsed[kind])
        for key, function in parts.items():
            elapsed = timed(function)
            if round_ >= args.warmup:
                times[key]['train'].append(elapsed)
        print(f'models: round {round_ + 1}/{rounds}', flush=True)

    def stats(values):
        return {'median': statistics.median(values), 'min': min(values), 'max': max(values)}

    summary = {key: {kind: stats(values) for kind, values in kinds.items()} for key, kinds in times.items()}
    setting = (f'EDSR 64x16 x4 (RCAN 10x20 x4 where named), batch {args.batch} of {args.lr_size}x{args.lr_size} LR, '
               f'{args.device}, {torch.get_num_threads()} threads, torch {torch.__version__}; median (min-max) of '
               f'{args.repeats} round-robin rounds after {args.warmup} warm-up')
    memory_kind = 'peak allocated MiB' if args.device == 'cuda' else 'saved-for-backward MiB'
    lines = [f'Training step: {setting}.', '',
             f'| model | precision | ms per iteration | x its baseline | x its float32 | inference ms | '
             f'inference x baseline | {memory_kind} | note |',
             '| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | --- |']
    results = {'setting': setting, 'models': {}, 'tlw_parts': {}, 'losses': {}}
    for (name, precision) in models:
        own, base = summary[name, precision], summary[MODELS[name][1], precision]
        own32 = summary.get((name, 'float32'))
        row = {'ms': 1000 * own['train']['median'], 'min_ms': 1000 * own['train']['min'],
               'max_ms': 1000 * own['train']['max'], 'ratio': own['train']['median'] / base['train']['median'],
               'vs_float32': own['train']['median'] / own32['train']['median'] if own32 else None,
               'inference_ms': 1000 * own['test']['median'],
               'inference_ratio': own['test']['median'] / base['test']['median'], 'memory_mib': memory[name, precision],
               'baseline': MODELS[name][1], 'precision': precision}
        results['models'][f'{name} [{precision}]'] = row
        lines.append(f"| {name} | {precision} | {row['ms']:.0f} ({row['min_ms']:.0f}-{row['max_ms']:.0f}) | "
                     f"{row['ratio']:.2f} | {row['vs_float32']:.2f} | {row['inference_ms']:.0f} | "
                     f"{row['inference_ratio']:.2f} | {row['memory_mib']:.0f} | {MODELS[name][2]} |")
    for (name, precision) in models:
        if name != TLW_PARTS:
            continue
        part = {key.split(' :: ')[1]: summary[key, p]['train']['median'] for key, p in parts if
                key.startswith(name + ' :: ') and p == precision}
        sr_step = summary[MODELS[name][1], precision]['train']['median']
        narrow = sr_step + part['net_w fwd+bwd'] + part['judge fwd (M-step)']
        full = narrow + part['net_w fwd (M-step)'] + part['judge fwd+bwd (E-step)']
        tlw = summary[name, precision]['train']['median']
        results['tlw_parts'][f'{name} [{precision}]'] = {
            'parts_ms': {k: 1000 * v for k, v in part.items()}, 'sr_step_ms': 1000 * sr_step,
            'narrow_sum_ms': 1000 * narrow, 'full_sum_ms': 1000 * full, 'vs_narrow': tlw / narrow, 'vs_full': tlw / full}
    if results['tlw_parts']:
        lines += ['', 'TLW against the sum of its parts, each timed in the same rounds (ms). "Issue\'s sum": SR step + '
                  'weighting net fwd+bwd + judge fwd (M-step); "Algorithm 1\'s sum" adds the weighting net\'s second '
                  'forward from the updated phi and the judge\'s backward into the E-step\'s weights.', '',
                  '| model | SR step | net_w fwd+bwd | net_w fwd (M) | judge fwd+bwd (E) | judge fwd (M) | TLW step | '
                  'x issue\'s sum | x Algorithm 1\'s sum |', '| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |']
        for key, row in results['tlw_parts'].items():
            p = row['parts_ms']
            tlw_ms = results['models'][key]['ms']
            lines.append(f"| {key} | {row['sr_step_ms']:.0f} | {p['net_w fwd+bwd']:.0f} | {p['net_w fwd (M-step)']:.0f} "
                         f"| {p['judge fwd+bwd (E-step)']:.0f} | {p['judge fwd (M-step)']:.0f} | {tlw_ms:.0f} | "
                         f"{row['vs_narrow']:.2f} | {row['vs_full']:.2f} |")
    if not args.no_losses:
        lines += [''] + loss_table(args, results)
    text = '\n'.join(lines)
    print('\n' + text)
    if args.json:
        with open(args.json, 'w') as f:
            json.dump(results, f, indent=2)
    if args.markdown:
        write_markdown(args.markdown, text, args.png)
    if args.png:
        draw(results, args.png)


def loss_table(args, results):
    """Each loss's forward+backward on (batch, 3, 4*lr, 4*lr) against BasicSR's L1Loss and the packaged
    implementations of the SSIM family, round-robin."""
    device = torch.device(args.device)
    shape = (args.batch, 3, 4 * args.lr_size, 4 * args.lr_size)
    pred, target = torch.rand(shape, device=device), torch.rand(shape, device=device)
    losses = {name: build_loss(dict(opt)).to(device) for name, opt in LOSSES.items()}
    references = reference_losses() if args.reference_repeats else {}

    times = {name: [] for name in [*losses, *references]}
    for round_ in range(5 + args.loss_repeats):
        for name, loss in losses.items():
            elapsed = time_loss(loss, pred, target, device)
            if round_ >= 5:
                times[name].append(elapsed)
        if round_ < 1 + args.reference_repeats:  # the references in the first rounds, interleaved too
            for name, loss in references.items():
                loss = loss.to(device) if isinstance(loss, torch.nn.Module) else loss
                elapsed = time_loss(loss, pred, target, device)
                if round_ >= 1:
                    times[name].append(elapsed)
    medians = {name: statistics.median(t) for name, t in times.items() if t}
    l1 = medians['L1Loss (BasicSR)']
    compared = {'SSIMLoss (sigma 1.5)': 'pytorch-msssim SSIM (win 11)',
                'MSSSIML1Loss (Mix, alpha 0.84)': 'kornia MS_SSIMLoss (alpha 0.84, compensation 1)'}
    lines = [f'Losses: forward+backward of {"x".join(map(str, shape))}, median (min-max) of {args.loss_repeats} '
             f'round-robin rounds (the packaged references: {args.reference_repeats}).', '',
             '| loss | ms | x L1Loss | x its packaged reference |', '| --- | ---: | ---: | ---: |']
    for name, median in medians.items():
        reference = medians.get(compared.get(name))
        row = {'ms': 1000 * median, 'min_ms': 1000 * min(times[name]), 'max_ms': 1000 * max(times[name]),
               'ratio_to_l1': median / l1, 'ratio_to_reference': median / reference if reference else None}
        results['losses'][name] = row
        vs = f"{row['ratio_to_reference']:.3f}" if reference else '-'
        lines.append(f"| {name} | {row['ms']:.1f} ({row['min_ms']:.1f}-{row['max_ms']:.1f}) | {row['ratio_to_l1']:.2f} "
                     f"| {vs} |")
    return lines


def write_markdown(path, tables, png):
    picture = f'![step and loss ratios]({os.path.basename(png)})\n\n' if png else ''
    with open(path, 'w') as f:
        f.write('# Benchmarks\n\nWritten by `python scripts/benchmark_training_step.py --markdown ' + path +
                (f' --png {png}' if png else '') + '`; see docs/speed.md for what the numbers mean '
                'and the targets they are held to.\n\n' + picture + tables + '\n')


def draw(results, path):
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt

    models = results['models']
    losses = {k: v for k, v in results['losses'].items() if not k.startswith(('kornia', 'pytorch-msssim'))}
    fig, axes = plt.subplots(1, 2 if losses else 1, figsize=(14 if losses else 8, 6), squeeze=False)
    ax = axes[0][0]
    labels = list(models)
    ax.barh(range(len(labels)), [models[k]['ratio'] for k in labels],
            color=['tab:blue' if models[k]['precision'] == 'float32' else 'tab:orange' for k in labels])
    ax.set_yticks(range(len(labels)), labels, fontsize=7)
    ax.invert_yaxis()
    ax.axvline(1, color='k', lw=0.8)
    ax.set_xlabel('training step / SRModel + L1Loss (same backbone and precision); blue fp32, orange half')
    if losses:
        ax = axes[0][1]
        names = list(losses)
        ax.barh(range(len(names)), [losses[k]['ratio_to_l1'] for k in names], color='tab:green')
        ax.set_yticks(range(len(names)), names, fontsize=7)
        ax.invert_yaxis()
        ax.set_xscale('log')
        ax.axvline(1, color='k', lw=0.8)
        ax.set_xlabel('loss forward+backward / L1Loss (log scale)')
    fig.suptitle(results['setting'], fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)


if __name__ == '__main__':
    main()
