"""Restoring saved generator states where fewer GPUs are visible than were saved (a recreated CUDA machine:
``torch.cuda`` answers as one with ``visible`` GPUs, whose ``set_rng_state`` refuses a device it lacks, as CUDA's
'invalid device ordinal' does)."""
import pytest
import torch
from conftest import basicsr_warnings

from losses_plugin import rng_state


@pytest.fixture
def cuda_generators(monkeypatch):
    def machine(visible):
        restored = {}

        def set_rng_state(state, device='cuda'):
            index = device if isinstance(device, int) else torch.device(device).index or 0
            if index >= visible:
                raise RuntimeError('CUDA error: invalid device ordinal')
            restored[index] = state

        monkeypatch.setattr(torch.cuda, 'is_available', lambda: True)
        monkeypatch.setattr(torch.cuda, 'device_count', lambda: visible)
        monkeypatch.setattr(torch.cuda, 'set_rng_state', set_rng_state)
        monkeypatch.setattr(torch.cuda.random, 'set_rng_state', set_rng_state)  # what set_rng_state_all calls
        return restored

    return machine


def saved_with_gpus(count):
    state = rng_state.capture()
    state['cuda'] = [torch.full((4,), i, dtype=torch.uint8) for i in range(count)]
    return state


@pytest.mark.parametrize('saved, visible, restored, warned', [(4, 2, [0, 1], True), (2, 2, [0, 1], False),
                                                              (1, 3, [0], True)])
def test_the_visible_gpus_get_their_saved_states(cuda_generators, saved, visible, restored, warned):
    state = saved_with_gpus(saved)
    on_gpus = cuda_generators(visible)
    with basicsr_warnings() as warnings:
        rng_state.restore(state)
    assert sorted(on_gpus) == restored and all(torch.equal(on_gpus[i], state['cuda'][i]) for i in restored)
    assert warnings == ([f'The checkpoint holds the CUDA generator states of {saved} GPUs and {visible} are visible '
                         f'now: restored those of GPUs 0-{len(restored) - 1}; a GPU without a saved state starts '
                         'fresh.'] if warned else [])


def test_the_cpu_generators_are_restored_too(cuda_generators):
    cuda_generators(1)
    state = saved_with_gpus(1)
    expected = torch.rand(3)
    torch.rand(5)
    rng_state.restore(state)
    assert torch.equal(torch.rand(3), expected)


class NotATensor:
    pass


def test_saved_states_load_with_weights_only(tmp_path):
    """The file holds tensors and plain values only; anything else is refused, not unpickled."""
    import pickle

    opt = {'path': {'training_states': str(tmp_path)}, 'world_size': 1, 'rank': 0}
    torch.save({'ranks': [NotATensor()], 'iters_per_epoch': 6}, rng_state.rng_state_path(opt, 2))
    with pytest.raises(pickle.UnpicklingError):
        rng_state.load(opt, 2)


def test_under_torchrun_rank_0_writes_every_ranks_states(tmp_path, monkeypatch):
    from losses_plugin import checkpoint_sets

    others = {'python': 'rank 1', 'numpy': 'rank 1', 'torch': torch.zeros(1)}

    def all_gather_object(gathered, mine):
        assert gathered == [None, None] and set(mine) >= {'python', 'numpy', 'torch'}
        gathered[:] = [mine, others]

    monkeypatch.setattr(rng_state.dist, 'all_gather_object', all_gather_object)
    opt = {'path': {'training_states': str(tmp_path), 'experiments_root': str(tmp_path)}, 'dist': True,
           'world_size': 2, 'rank': 0}
    rng_state.save(opt, 4, 6)
    checkpoint_sets.writer(opt).wait()
    saved = torch.load(tmp_path / '4_rng.pth', weights_only=False)
    assert len(saved['ranks']) == 2 and saved['ranks'][1]['python'] == 'rank 1' and saved['iters_per_epoch'] == 6
    opt['rank'] = 1
    assert rng_state.load(opt, 4) == (saved['ranks'][1], 6)
