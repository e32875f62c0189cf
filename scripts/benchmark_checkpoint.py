"""Time saving one checkpoint set atomically (temporary file, sha256, fsync, os.replace) against plain torch.save.

A set is what the trainer writes at a checkpoint: the network file (``params``) and the training state
(Adam's moments after one step, the scheduler). For EDSR 64x16 and RCAN (BasicSR's defaults), each repetition
saves the set both ways, in alternating order, into the same folder; the medians and their ratio are printed.
fsync waits for the disk, so the ratio depends on the disk and its cache: run it where the checkpoints go.

    OMP_NUM_THREADS=1 python scripts/benchmark_checkpoint.py --repeats 15 --dir /path/on/that/disk
"""
import argparse
import hashlib
import os
import statistics
import tempfile
import time

import torch
from basicsr.archs.edsr_arch import EDSR
from basicsr.archs.rcan_arch import RCAN

import losses_plugin  # noqa: F401  (BasicSR's import needs the compat patches)
from losses_plugin import checkpoint_files

NETWORKS = {
    'EDSR 64x16': lambda: EDSR(3, 3, num_feat=64, num_block=16, upscale=4),
    'RCAN': lambda: RCAN(3, 3, upscale=4),
}


def checkpoint_set(net):
    """(network file contents, training state) as BasicSR saves them, Adam's moments filled by one step."""
    optimizer = torch.optim.Adam(net.parameters(), lr=1e-4)
    scheduler = torch.optim.lr_scheduler.MultiStepLR(optimizer, milestones=[100], gamma=0.5)
    net(torch.rand(1, 3, 8, 8)).mean().backward()
    optimizer.step()
    network = {'params': {k: v.detach().clone() for k, v in net.state_dict().items()}}
    state = {'epoch': 0, 'iter': 1, 'optimizers': [optimizer.state_dict()], 'schedulers': [scheduler.state_dict()]}
    return network, state


def save_plain(files, folder):
    for name, obj in files.items():
        torch.save(obj, os.path.join(folder, name))


def save_atomic(files, folder):
    for name, obj in files.items():
        checkpoint_files.save(obj, os.path.join(folder, name))


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--repeats', type=int, default=15)
    parser.add_argument('--dir', default=None, help='where to write (default: a temporary folder)')
    args = parser.parse_args()
    torch.manual_seed(0)
    with tempfile.TemporaryDirectory(dir=args.dir) as folder:
        for label, build in NETWORKS.items():
            network, state = checkpoint_set(build())
            files = {'net_g_1.pth': network, '1.state': state}
            ways = {'torch.save': save_plain, 'atomic': save_atomic}
            times = {way: [] for way in ways}
            for repeat in range(args.repeats + 1):
                order = list(ways) if repeat % 2 == 0 else list(reversed(ways))
                for way in order:
                    start = time.perf_counter()
                    ways[way](files, folder)
                    if repeat:  # the first round warms the page cache and the allocator
                        times[way].append(time.perf_counter() - start)
            size = sum(os.path.getsize(os.path.join(folder, name)) for name in files)
            data = b''.join(open(os.path.join(folder, name), 'rb').read() for name in files)
            start = time.perf_counter()
            hashlib.sha256(data).hexdigest()
            sha_ms = (time.perf_counter() - start) * 1e3
            plain, atomic = (statistics.median(times[way]) * 1e3 for way in ways)
            print(f'{label}: set of {size / 2**20:.1f} MiB; torch.save {plain:.1f} ms, atomic (sha256 + fsync) '
                  f'{atomic:.1f} ms, ratio {atomic / plain:.2f}x (medians of {args.repeats}); sha256 alone '
                  f'{sha_ms:.1f} ms')


if __name__ == '__main__':
    main()
