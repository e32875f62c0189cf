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
