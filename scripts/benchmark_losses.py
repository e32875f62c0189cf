"""Speed of each loss: forward + backward, median of repeated runs, as a ratio to BasicSR's L1Loss
measured in the same run, and as a share of one EDSR x4 training step.

Losses are timed round-robin (each round times every loss once), so a slow spell of the machine
hits all of them alike. Usage:

    python scripts/benchmark_losses.py [--batch 16 --size 128 --repeats 30 --device cpu --json out.json]

``--references`` adds the packaged implementations our losses are compared with (kornia's
MS_SSIMLoss, pytorch-msssim's SSIM; test dependencies), timed ``--reference-repeats`` times since
kornia's dense 33x33 windows take seconds per call on a CPU.
"""
import argparse
import json
import statistics
import time

import losses_plugin  # noqa: F401  (first: patches BasicSR and registers our classes)

import torch
from basicsr.archs.edsr_arch import EDSR
from basicsr.losses import build_loss

# name -> loss options; later losses add a row here
LOSSES = {
    'L1Loss (BasicSR)': {'type': 'L1Loss'},
    'SPLoss (alpha 2)': {'type': 'SPLoss', 'alpha': 2.0},
    'AsymmetricLoss (tanh_inverse, loss)': {'type': 'AsymmetricLoss'},
    'AsymmetricLoss (quartile, io, mse)': {'type': 'AsymmetricLoss', 'mask': 'quartile', 'apply': 'io', 'base': 'mse'},
    'SSIMLoss (sigma 1.5)': {'type': 'SSIMLoss'},
    'MSSSIMLoss (sigmas 0.5..8)': {'type': 'MSSSIMLoss'},
    'MSSSIML1Loss (Mix, alpha 0.84)': {'type': 'MSSSIML1Loss'},
}


def reference_losses():
    """Packaged implementations of the same losses, as they are configured in our tests."""
    import kornia
    import pytorch_msssim
    return {
        'kornia MS_SSIMLoss (alpha 0.84, compensation 1)': kornia.losses.MS_SSIMLoss(alpha=0.84, compensation=1.0),
        'pytorch-msssim SSIM (win 11)': lambda x, y: 1 - pytorch_msssim.ssim(x, y, data_range=1.0, win_size=11),
    }


def synchronize(device):
    if device.type == 'cuda':
        torch.cuda.synchronize()


def time_loss(loss, pred, target, device):
    pred = pred.detach().requires_grad_()
    synchronize(device)
    start = time.perf_counter()
    loss(pred, target).backward()
    synchronize(device)
    return time.perf_counter() - start


def time_edsr_step(batch, lr_size, device, repeats, warmup):
    """Median seconds of one EDSR (64 features, 16 blocks) x4 step: forward, L1, backward, Adam."""
    net = EDSR(3, 3, num_feat=64, num_block=16, upscale=4).to(device)
    optimizer = torch.optim.Adam(net.parameters(), 1e-4)
    lq = torch.rand(batch, 3, lr_size, lr_size, device=device)
    gt = torch.rand(batch, 3, lr_size * 4, lr_size * 4, device=device)
    times = []
    for i in range(warmup + repeats):
        synchronize(device)
        start = time.perf_counter()
        optimizer.zero_grad()
        torch.nn.functional.l1_loss(net(lq), gt).backward()
        optimizer.step()
        synchronize(device)
        if i >= warmup:
            times.append(time.perf_counter() - start)
    return statistics.median(times)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--batch', type=int, default=16)
    parser.add_argument('--size', type=int, default=128, help='HR side; the EDSR step takes size/4 LR inputs')
    parser.add_argument('--repeats', type=int, default=30)
    parser.add_argument('--warmup', type=int, default=5)
    parser.add_argument('--step-repeats', type=int, default=5, help='repeats of the EDSR step')
    parser.add_argument('--device', default='cpu')
    parser.add_argument('--json', help='also write the results here')
    parser.add_argument('--references', action='store_true', help='also time kornia and pytorch-msssim')
    parser.add_argument('--reference-repeats', type=int, default=3)
    args = parser.parse_args()
    device = torch.device(args.device)
    torch.manual_seed(0)
    pred = torch.rand(args.batch, 3, args.size, args.size, device=device)
    target = torch.rand(args.batch, 3, args.size, args.size, device=device)
    losses = {name: build_loss(dict(opt)).to(device) for name, opt in LOSSES.items()}

    times = {name: [] for name in losses}
    for i in range(args.warmup + args.repeats):
        for name, loss in losses.items():
            elapsed = time_loss(loss, pred, target, device)
            if i >= args.warmup:
                times[name].append(elapsed)
    if args.references:
        for name, loss in reference_losses().items():
            loss = loss.to(device) if isinstance(loss, torch.nn.Module) else loss
            timings = [time_loss(loss, pred, target, device) for _ in range(1 + args.reference_repeats)][1:]
            times[name] = timings
    medians = {name: statistics.median(t) for name, t in times.items()}
    step = time_edsr_step(args.batch, args.size // 4, device, args.step_repeats, warmup=2)
    baseline = medians['L1Loss (BasicSR)']

    print(f'\n{args.batch}x3x{args.size}x{args.size}, forward+backward, median of {args.repeats} '
          f'(references: {args.reference_repeats}) ({device}, {torch.get_num_threads()} threads, torch {torch.__version__}); '
          f'EDSR x4 step (64 feat, 16 blocks, {args.batch}x3x{args.size // 4}x{args.size // 4}): {step * 1e3:.0f} ms\n')
    print('| loss | ms | x L1Loss | share of EDSR step |')
    print('| --- | ---: | ---: | ---: |')
    rows = []
    for name, median in medians.items():
        rows.append({'loss': name, 'ms': median * 1e3, 'ratio_to_l1': median / baseline, 'share_of_step': median / step})
        print(f'| {name} | {median * 1e3:.2f} | {median / baseline:.2f} | {100 * median / step:.1f}% |')
    if args.json:
        with open(args.json, 'w') as f:
            json.dump({'shape': [args.batch, 3, args.size, args.size], 'device': str(device),
                       'edsr_step_ms': step * 1e3, 'rows': rows}, f, indent=2)


if __name__ == '__main__':
    main()
