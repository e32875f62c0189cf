"""Every network the package registers runs under DataParallel as it runs alone: torch's own ``replicate`` and
``DataParallel.forward`` (``data_parallel_simulation``: two replicas, each in its own thread, on half the batch)
give the plain network's outputs and, after backward, its gradients.

The networks run in float64, in training mode (forward and backward) and in eval mode without gradients
(validation); the chunked batch changes only the order of summations. Random
draws inside a forward (NLSN's hash rotations) are fixed for the test (every ``torch.randn`` without a generator
draws from one seed), since two replicas draw twice where the plain network draws once. In training mode
BatchNorm normalises by the statistics of each replica's chunk (DataParallel is not SyncBatchNorm), so the batch
of the networks with BatchNorm (DnCNN, TLWWeightingNet) is two copies of the same two images: each chunk's
statistics are then the whole batch's.
"""
import copy

import pytest
import torch
from basicsr.archs import build_network
from basicsr.utils.registry import ARCH_REGISTRY
from data_parallel_simulation import SimulatedDataParallel

EDSR = {'type': 'EDSR', 'num_in_ch': 3, 'num_out_ch': 3, 'num_feat': 8, 'num_block': 1, 'upscale': 2}


def images(n, channels=3, size=8, seed=0):
    return torch.rand(n, channels, size, size, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)


def twice(x):
    """Two copies of a batch: each of the two chunks holds the same images."""
    return torch.cat([x, x])


# name -> (options, () -> (args, kwargs)): one case per registered network, small enough for a second
CASES = {
    'ClassModule': ({'num_feat': 8, 'pool': 1}, lambda: ((images(4, size=16), ), {})),
    'DnCNN': ({'num_feat': 4, 'num_conv': 3}, lambda: ((twice(images(2)), ), {})),
    'FGDNet': ({'backbone': EDSR, 'class_module': {'num_feat': 8, 'pool': 1}},
               lambda: ((images(4, size=16), ), {'return_all': True})),
    'GRUNet': ({'num_feat': 2, 'num_down': 1}, lambda: ((images(4), ), {'noise_level': torch.tensor([5., 10, 15, 20])})),
    'HAT': ({'embed_dim': 4, 'depths': [1], 'num_heads': [1], 'window_size': 4, 'num_feat': 4, 'squeeze_factor': 4,
             'compress_ratio': 1, 'img_size': 8, 'upscale': 2, 'drop_path_rate': 0.}, lambda: ((images(4, size=6), ), {})),
    'LapSRN': ({'num_feat': 4, 'depth': 1, 'upscale': 4}, lambda: ((images(4), ), {})),
    'MPRNet': ({'n_feat': 8, 'scale_unetfeats': 4, 'scale_orsnetfeats': 4, 'num_cab': 1, 'reduction': 2},
               lambda: ((images(4), ), {'return_stages': True})),
    'NLSN': ({'num_feat': 4, 'num_block': 1, 'n_hashes': 1, 'chunk_size': 4, 'reduction': 2, 'attention_every': 1,
              'upscale': 2}, lambda: ((images(4), ), {})),
    'SRCNN': ({'num_feat': 4, 'num_feat2': 4, 'kernel_sizes': [3, 1, 3], 'upscale': 2}, lambda: ((images(4), ), {})),
    'TLWWeightingNet': ({'num_feat': 4, 'k': 0.6}, lambda: ((twice(images(2, seed=1)), twice(images(2, seed=2))), {})),
    'UncertaintySRNet': ({'backbone': EDSR, 'num_feat': 4}, lambda: ((images(4), ), {'return_uncertainty': True})),
    'VDSR': ({'num_feat': 4, 'num_conv': 3, 'upscale': 2}, lambda: ((images(4), ), {})),
    'ZhaoDemosaickNet': ({'num_feat': 4}, lambda: ((images(4), ), {})),
}


def registered_networks():
    return sorted(name for name, cls in ARCH_REGISTRY._obj_map.items() if cls.__module__.startswith('losses_plugin.'))


def test_every_registered_network_has_a_case():
    assert registered_networks() == sorted(CASES)


def tensors(output):
    """The tensors of a network's output (a tensor, a list, or a dict with None values), in order."""
    if torch.is_tensor(output):
        return [output]
    if isinstance(output, dict):
        output = list(output.values())
    return [t for t in output if t is not None]


def forward_backward(net, args, kwargs, wrapper=None):
    """The outputs of ``wrapper(net)`` (or of ``net``) and the gradients on ``net`` of a fixed random projection
    of every floating output."""
    net.zero_grad(set_to_none=True)
    outputs = tensors((wrapper or net)(*args, **kwargs))
    generator = torch.Generator().manual_seed(3)
    loss = sum((t * torch.rand(t.shape, generator=generator, dtype=t.dtype)).sum() for t in outputs
               if t.is_floating_point())
    loss.backward()
    return [t.detach() for t in outputs], {name: p.grad for name, p in net.named_parameters() if p.grad is not None}


@pytest.fixture
def fixed_draws(monkeypatch):
    """Every ``torch.randn`` without a generator draws the same numbers (NLSN's rotations)."""
    randn = torch.randn

    def seeded(*shape, generator=None, **kwargs):
        return randn(*shape, generator=generator or torch.Generator().manual_seed(0), **kwargs)

    monkeypatch.setattr(torch, 'randn', seeded)


@pytest.mark.usefixtures('fixed_draws')
@pytest.mark.parametrize('name', sorted(CASES))
def test_each_replica_gives_the_plain_networks_outputs_and_gradients(name):
    options, inputs = CASES[name]
    torch.manual_seed(0)
    net = build_network({'type': name, **copy.deepcopy(options)}).double().train()
    args, kwargs = inputs()
    evaluated = copy.deepcopy(net).eval()
    plain_outputs, plain_grads = forward_backward(copy.deepcopy(net), args, kwargs)

    wrapped = SimulatedDataParallel(net)
    outputs, grads = forward_backward(net, args, kwargs, wrapped)
    assert len(wrapped.replica_threads) == 2 and wrapped.replica_threads[0] is not wrapped.replica_threads[1]
    assert [t.shape for t in outputs] == [t.shape for t in plain_outputs]
    for output, plain in zip(outputs, plain_outputs):
        torch.testing.assert_close(output, plain, rtol=1e-9, atol=1e-12)
    assert set(grads) == set(plain_grads) == {n for n, p in net.named_parameters() if p.requires_grad}
    for key, grad in grads.items():
        torch.testing.assert_close(grad, plain_grads[key], rtol=1e-9, atol=1e-12, msg=key)

    # validation and testing: eval mode without gradients (replicate's detached broadcast)
    with torch.no_grad():
        plain_outputs = tensors(evaluated(*args, **kwargs))
        outputs = tensors(SimulatedDataParallel(evaluated)(*args, **kwargs))
    for output, plain in zip(outputs, plain_outputs, strict=True):
        torch.testing.assert_close(output, plain, rtol=1e-9, atol=1e-12)
