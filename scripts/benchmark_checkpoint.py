"""Time saving one checkpoint set as the trainer does against plain torch.save of the same files.

A set is what the trainer writes at a checkpoint: the network file (``params``) and the training state
(Adam's moments after one step, the scheduler). For EDSR 64x16 and RCAN (BasicSR's defaults), each repetition
saves the set three ways, in rotating order, into one folder, and the medians are printed with their ratios
to plain ``torch.save``:

- ``torch.save``: each file in place, nothing fsynced (BasicSR 1.4.2);
- ``set, background``: :class:`losses_plugin.checkpoint_sets.SetWriter` as our trainer uses it: the time the
  training loop waits (``torch.save`` into temporary files and their CRC-32), and the time until the set is
  durable (fsyncs and renames, done in a thread while training goes on);
- ``set, foreground``: the same with everything before ``model.save`` returns (BasicSR's own train_pipeline).

fsync waits for the disk, so the durable times depend on the disk and its cache: run it where the
checkpoints go.

    OMP_NUM_THREADS=1 python scripts/benchmark_checkpoint.py --repeats 15 --dir /path/on/that/disk
"""
import argparse
import os
import statistics
import tempfile
import time

import torch
from basicsr.archs.edsr_arch import EDSR
from basicsr.archs.rcan_arch import RCAN

import losses_plugin  # noqa: F401  (BasicSR's import needs the compat patches)
from losses_plugin import checkpoint_sets

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


def save_plain(network, state, root):
    torch.save(network, os.path.join(root, 'models', 'net_g_1.pth'))
    torch.save(state, os.path.join(root, 'training_states', '1.state'))


def save_set(network, state, root, background):
    """(seconds until the training loop goes on, seconds until the set is durable)."""
    writer = checkpoint_sets.SetWriter(root)
    writer.background = background
    start = time.perf_counter()
    writer.write(1, network, os.path.join(root, 'models', 'net_g_1.pth'))
    writer.commit(1, dict(state), os.path.join(root, 'training_states', '1.state'))
    returned = time.perf_counter()
    writer.wait()
    return returned - start, time.perf_counter() - start


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--repeats', type=int, default=15)
    parser.add_argument('--dir', default=None, help='where to write (default: a temporary folder)')
    args = parser.parse_args()
    torch.manual_seed(0)
    with tempfile.TemporaryDirectory(dir=args.dir) as root:
        for folder in ('models', 'training_states'):
            os.makedirs(os.path.join(root, folder))
        for label, build in NETWORKS.items():
            network, state = checkpoint_set(build())
            times = {'torch.save': [], 'background: loop waits': [], 'background: durable': [], 'foreground': []}
            ways = ['plain', 'background', 'foreground']
            for repeat in range(args.repeats + 1):
                for way in ways[repeat % 3:] + ways[:repeat % 3]:
                    if way == 'plain':
                        start = time.perf_counter()
                        save_plain(network, state, root)
                        spent = {'torch.save': time.perf_counter() - start}
                    elif way == 'background':
                        spent = dict(zip(('background: loop waits', 'background: durable'),
                                         save_set(network, state, root, True)))
                    else:
                        spent = {'foreground': save_set(network, state, root, False)[1]}
                    if repeat:  # the first round warms the page cache and the allocator
                        for key, seconds in spent.items():
                            times[key].append(seconds)
            size = sum(os.path.getsize(os.path.join(root, name))
                       for name in ('models/net_g_1.pth', 'training_states/1.state'))
            medians = {key: statistics.median(values) * 1e3 for key, values in times.items()}
            plain = medians['torch.save']
            print(f'{label}: set of {size / 2**20:.1f} MiB, medians of {args.repeats}: ' + ', '.join(
                f'{key} {ms:.1f} ms ({ms / plain:.2f}x)' for key, ms in medians.items()))


if __name__ == '__main__':
    main()
