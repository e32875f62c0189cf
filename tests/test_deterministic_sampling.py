"""The resumable sampler keeps BasicSR's order; keyed samples depend on the key alone."""
import pickle
import random

import numpy as np
import pytest
import torch
from basicsr.data.data_sampler import EnlargedSampler
from conftest import tiny_options, write_options
from torch.utils.data import Dataset

from losses_plugin import cli
from losses_plugin.data.deterministic_sampling import KeySeededDataset, ResumableEnlargedSampler


class RandomDraws(Dataset):
    """Each item draws from the three global generators, like BasicSR's augmentations do."""

    def __len__(self):
        return 5

    def __getitem__(self, index):
        return index, random.random(), float(np.random.rand()), float(torch.rand(()))


def test_order_is_basicsr_order_for_each_rank():
    data = RandomDraws()
    for rank in range(2):
        ours = ResumableEnlargedSampler(data, num_replicas=2, rank=rank, ratio=3)
        theirs = EnlargedSampler(data, num_replicas=2, rank=rank, ratio=3)
        ours.set_epoch(4)
        theirs.set_epoch(4)
        keys = list(ours)
        assert [p % len(data) for _, p in keys] == list(theirs)
        assert all(epoch == 4 for epoch, _ in keys) and len(keys) == len(ours) == len(theirs)


def test_skip_yields_the_tail_of_the_epoch():
    sampler = ResumableEnlargedSampler(RandomDraws(), num_replicas=1, rank=0, ratio=4)
    sampler.set_epoch(2)
    full = list(sampler)
    sampler.set_epoch(2, skip=7)
    assert list(sampler) == full[7:] and len(sampler) == len(full) - 7


def test_samples_depend_on_key_only_and_leave_global_generators_alone():
    data = KeySeededDataset(RandomDraws(), seed=10)
    random.seed(1)
    np.random.seed(1)
    torch.manual_seed(1)
    before = random.random(), np.random.rand(), torch.rand(())
    first = data[(0, 7)]
    assert first == data[(0, 7)]
    assert first[0] == 7 % 5
    assert data[(1, 7)][1:] != first[1:]  # another epoch, other augmentations
    assert data[(0, 12)][1:] != first[1:]  # same image again in the enlarged epoch, other augmentations
    random.seed(1)
    np.random.seed(1)
    torch.manual_seed(1)
    data[(3, 3)]
    assert (random.random(), np.random.rand(), torch.rand(())) == before


def test_the_runs_seed_changes_every_sample_and_the_wrapper_passes_attributes_through():
    data, other = KeySeededDataset(RandomDraws(), seed=10), KeySeededDataset(RandomDraws(), seed=11)
    assert all(data[(0, p)][1:] != other[(0, p)][1:] for p in range(5))
    data.dataset.opt = {'phase': 'train'}
    assert data.opt == {'phase': 'train'} and len(data) == 5  # BasicSR reads the dataset's opt via the loader
    copy = pickle.loads(pickle.dumps(data))  # DataLoader workers get a pickled copy (no recursion on 'dataset')
    assert copy[(2, 3)] == data[(2, 3)] and copy.opt == data.opt


def test_a_new_sampler_yields_its_whole_first_epoch():
    """Before any set_epoch (BasicSR's loader may iterate first): epoch 0, nothing skipped."""
    sampler = ResumableEnlargedSampler(RandomDraws(), num_replicas=1, rank=0, ratio=2)
    keys = list(sampler)
    assert len(sampler) == len(keys) == 10 and {epoch for epoch, _ in keys} == {0}
    assert sorted(p for _, p in keys) == list(range(10))


class CudaSeedCalls:
    """Counts ``torch.cuda.manual_seed_all`` calls (``torch.manual_seed`` makes one), with whether BasicSR's
    ``set_random_seed`` (the run's one seeding at start-up) made it."""

    def __init__(self, monkeypatch):
        self.calls = []
        monkeypatch.setattr(torch.cuda, 'manual_seed_all', self)

    def __call__(self, seed):
        import traceback
        self.calls.append(any(frame.name == 'set_random_seed' for frame in traceback.extract_stack()))

    @property
    def outside_start_up(self):
        return self.calls.count(False)


def test_a_sample_never_seeds_the_cuda_generators(monkeypatch):
    calls = CudaSeedCalls(monkeypatch)
    data = KeySeededDataset(RandomDraws(), seed=10)
    first = data[(0, 3)]
    assert calls.calls == [] and data[(0, 3)] == first  # still a function of the key alone


@pytest.mark.parametrize('loading', [{'num_worker_per_gpu': 0}, {'num_worker_per_gpu': 0, 'prefetch_mode': 'cpu',
                                                                   'num_prefetch_queue': 2}])
def test_training_seeds_the_cuda_generators_only_at_start_up(demo_data, tmp_path, monkeypatch, loading):
    """Samples made in the training process (no workers) or in BasicSR's CPU prefetch thread: 6 iterations of
    batch 2 made 16 ``torch.cuda.manual_seed_all`` calls when each sample was seeded with ``torch.manual_seed``."""
    opt = tiny_options(demo_data, 'cuda_seeds', total_iter=6)
    opt['datasets']['train'].update(loading)
    monkeypatch.chdir(tmp_path)
    calls = CudaSeedCalls(monkeypatch)
    assert cli.main(['train', '-opt', str(write_options(opt, tmp_path / 'o.yml'))]) == 0
    assert calls.outside_start_up == 0 and calls.calls  # the start-up seeding still reaches CUDA
