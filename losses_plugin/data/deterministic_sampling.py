"""Training samples that depend only on (seed, epoch, position), so a resumed run continues exactly.

BasicSR restarts the interrupted epoch from its first batch on resume, and its augmentations draw
from worker random streams whose position is lost. Here the sampler yields ``(epoch, position)``
keys and can start an epoch part-way; the dataset wrapper seeds Python's, NumPy's and torch's CPU
global generators from the key around each ``__getitem__`` (restoring them afterwards), so any
BasicSR dataset's random crop/flip/rotation is a function of the key alone. The order is exactly
BasicSR's ``EnlargedSampler`` order.

The CUDA generators are never touched: ``torch.manual_seed`` would seed every one of them, and with
``num_worker_per_gpu: 0`` or ``prefetch_mode: cpu`` the samples are made in the training process (or its
prefetch thread), so each sample would reset the generators of TLW's relaxed-Bernoulli noise, dropout
and the saved CUDA RNG state to a data-derived seed.
"""
import random

import numpy as np
import torch
from basicsr.data.data_sampler import EnlargedSampler
from torch.utils.data import Dataset


class ResumableEnlargedSampler(EnlargedSampler):
    """``EnlargedSampler`` that yields ``(epoch, position)`` keys and can skip an epoch's first samples.

    Args:
        dataset (Dataset): as ``EnlargedSampler``.
        num_replicas (int): the world size.
        rank (int): this process's rank.
        ratio (int): the dataset enlarge ratio. Default: 1.
    """

    def __init__(self, dataset, num_replicas, rank, ratio=1):
        super().__init__(dataset, num_replicas, rank, ratio)
        self.skip = 0

    def set_epoch(self, epoch, skip=0):
        """Starts ``epoch`` after its first ``skip`` samples of this rank (those a resumed run has seen)."""
        if not 0 <= skip <= self.num_samples:
            raise ValueError(f'skip must lie in [0, {self.num_samples}], got {skip}')
        self.epoch = epoch
        self.skip = skip

    def __iter__(self):
        generator = torch.Generator()
        generator.manual_seed(self.epoch)
        positions = torch.randperm(self.total_size, generator=generator)[self.rank::self.num_replicas]
        return iter([(self.epoch, p) for p in positions[self.skip:].tolist()])

    def __len__(self):
        return self.num_samples - self.skip


class KeySeededDataset(Dataset):
    """Wraps a dataset so that item ``(epoch, position)`` is ``dataset[position % len]`` drawn with
    random generators seeded from ``(seed, epoch, position)``.

    Args:
        dataset (Dataset): any map-style dataset, e.g. BasicSR's ``PairedImageDataset``.
        seed (int): the run's ``manual_seed``.
    """

    def __init__(self, dataset, seed):
        self.dataset = dataset
        self.seed = seed

    def __len__(self):
        return len(self.dataset)

    def __getattr__(self, name):
        # BasicSR reads attributes such as ``opt`` from the dataset a loader holds.
        if name == 'dataset':
            raise AttributeError(name)
        return getattr(self.dataset, name)

    def __getitem__(self, key):
        epoch, position = key
        sample_seed = int(np.random.SeedSequence([self.seed, epoch, position]).generate_state(1)[0])
        python_state, numpy_state = random.getstate(), np.random.get_state()
        random.seed(sample_seed)
        np.random.seed(sample_seed)
        try:
            with torch.random.fork_rng(devices=[]):  # restores the CPU generator only
                torch.default_generator.manual_seed(sample_seed)  # not torch.manual_seed: that seeds CUDA too
                return self.dataset[position % len(self.dataset)]
        finally:
            random.setstate(python_state)
            np.random.set_state(numpy_state)
