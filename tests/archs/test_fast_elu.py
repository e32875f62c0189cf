"""FastELU: torch's ELU (alpha 1), values and gradients, computed by exp on a CPU."""
import torch
import torch.nn.functional as F

from losses_plugin.archs.fast_elu import FastELU
from losses_plugin.archs.uncertainty_sr_arch import UncertaintySRNet

EDSR = {'type': 'EDSR', 'num_in_ch': 3, 'num_out_ch': 3, 'num_feat': 8, 'num_block': 1, 'upscale': 2}


def test_values_and_gradients_are_torchs_elu():
    x = torch.cat([torch.linspace(-30, 5, 1001), torch.tensor([0.0, -0.0, -1e-8, 1e-8, -1e4])])
    x = x.view(1, 1, 1, -1).repeat(2, 3, 1, 1).requires_grad_()
    reference = x.detach().clone().requires_grad_()
    grad = torch.randn_like(x)
    ours, theirs = FastELU()(x), F.elu(reference)
    assert torch.allclose(ours, theirs, rtol=0, atol=1.2e-7)
    ours.backward(grad)
    theirs.backward(grad)
    assert torch.allclose(x.grad, reference.grad, rtol=0, atol=2.5e-7 * grad.abs().max().item())


def test_gradcheck_in_float64():
    x = torch.randn(2, 3, 4, 5, dtype=torch.float64) * 3
    x = (x + 0.05 * x.sign()).requires_grad_()  # away from the kink at 0, where finite differences straddle it
    assert torch.autograd.gradcheck(FastELU(), (x,))


def test_keeps_the_memory_format_and_leaves_its_input():
    x = torch.randn(2, 4, 5, 6).to(memory_format=torch.channels_last)
    before = x.clone()
    y = FastELU()(x)
    assert y.is_contiguous(memory_format=torch.channels_last) and torch.equal(x, before)


def test_other_devices_run_torchs_elu():
    y = FastELU()(torch.empty(2, 3, device='meta', requires_grad=True))
    assert y.device.type == 'meta' and y.shape == (2, 3) and type(y.grad_fn).__name__ == 'EluBackward0'
    assert type(FastELU()(torch.zeros(2, 3, requires_grad=True)).grad_fn).__name__ == '_ExpELUBackward'


def test_the_udl_head_is_conv_elu_conv_elu_conv():
    net = UncertaintySRNet(EDSR, num_feat=6)
    kinds = [type(m).__name__ for m in net.head]
    assert kinds == ['Conv2d', 'FastELU', 'Conv2d', 'FastELU', 'Conv2d']
    torch.manual_seed(0)
    lq = torch.rand(1, 3, 6, 6)
    _, s = net(lq, return_uncertainty=True)
    features = net.net(lq)[1]
    expected = net.head[4](F.elu(net.head[2](F.elu(net.head[0](features)))))
    assert torch.allclose(s, expected, atol=1e-6)
