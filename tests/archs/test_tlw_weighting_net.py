"""TLWWeightingNet: layout, FixedSum output, relaxed Bernoulli samples."""
import pytest
import torch
from basicsr.archs import build_network

from losses_plugin.archs.tlw_weighting_arch import relaxed_bernoulli
from losses_plugin.checks import OptionError


def test_means_sum_to_k_after_the_squash_and_stay_inside_bounds():
    torch.manual_seed(0)
    net = build_network({'type': 'TLWWeightingNet', 'num_feat': 8, 'k': 0.3})
    gt, sr = torch.rand(2, 3, 24, 20), torch.rand(2, 3, 24, 20)
    mean = net(gt, sr)
    assert mean.shape == gt.shape
    # 0.999 * FixedSum + 0.0005: the mean is 0.999 k + 0.0005 per image and channel
    assert torch.allclose(mean.mean(dim=(-2, -1)), torch.full((2, 3), 0.999 * 0.3 + 0.0005), atol=1e-6)
    assert mean.min() >= 0.0005 and mean.max() <= 0.9995
    net.set_k(0.7)
    assert torch.allclose(net(gt, sr).mean(dim=(-2, -1)), torch.full((2, 3), 0.999 * 0.7 + 0.0005), atol=1e-6)
    convs = [m for m in net.modules() if isinstance(m, torch.nn.Conv2d)]
    assert [c.kernel_size[0] for c in convs] == [7, 5, 3, 3] and convs[0].in_channels == 6
    assert sum(isinstance(m, torch.nn.BatchNorm2d) for m in net.modules()) == 3


def test_relaxed_bernoulli_samples_are_near_binary_with_the_right_mean():
    torch.manual_seed(0)
    mean = torch.full((1, 1, 200, 200), 0.3)
    samples = relaxed_bernoulli(mean, temperature=0.1, num_samples=2)
    assert samples.shape == (2, 1, 1, 200, 200)
    assert samples.mean().item() == pytest.approx(0.3, abs=0.01)
    assert ((samples < 0.05) | (samples > 0.95)).float().mean() > 0.8  # t = 0.1: mostly 0 or 1
    # differentiable in the mean
    mean = torch.full((1, 1, 8, 8), 0.5, requires_grad=True)
    relaxed_bernoulli(mean, 0.1, 3).sum().backward()
    assert torch.isfinite(mean.grad).all() and mean.grad.abs().sum() > 0


def test_sample_count_and_temperature_come_from_options():
    net = build_network({'type': 'TLWWeightingNet', 'num_feat': 4, 'num_samples': 5, 'temperature': 1.0})
    mean = net(torch.rand(1, 3, 8, 8), torch.rand(1, 3, 8, 8))
    assert net.sample(mean).shape == (5, 1, 3, 8, 8) and net.sample(mean, 1).shape == (1, 1, 3, 8, 8)


def test_channels_last_layout_gives_the_same_means_and_gradients():
    torch.manual_seed(0)
    fast = build_network({'type': 'TLWWeightingNet', 'num_feat': 8})
    plain = build_network({'type': 'TLWWeightingNet', 'num_feat': 8, 'channels_last': False})
    plain.load_state_dict(fast.state_dict())
    assert fast.body[0].weight.is_contiguous(memory_format=torch.channels_last)
    assert plain.body[0].weight.is_contiguous()
    gt, sr = torch.rand(2, 3, 24, 20), torch.rand(2, 3, 24, 20)
    fast(gt, sr).square().sum().backward()
    plain(gt, sr).square().sum().backward()
    assert torch.allclose(fast(gt, sr), plain(gt, sr), atol=1e-6)
    assert torch.allclose(fast.body[0].weight.grad, plain.body[0].weight.grad, atol=1e-5)


@pytest.mark.parametrize('option, value', [('temperature', 0), ('num_samples', 0), ('num_samples', 1.5), ('k', 2),
                                           ('channels_last', 'yes')])
def test_invalid_options_are_clear_errors(option, value):
    with pytest.raises(OptionError, match=f"^TLWWeightingNet: option '{option}' must be"):
        build_network({'type': 'TLWWeightingNet', option: value})


@pytest.mark.parametrize('temperature', [0.1, 0.5, 2.0])
def test_relaxed_bernoulli_is_the_binary_concrete_formula_on_a_fixed_u(temperature):
    """sigmoid((log(w/(1-w)) + log(u/(1-u))) / t) with u = 0.0005 + 0.999*U(0, 1), in float64 from the
    same uniform draws (one generator state, cloned)."""
    mean = torch.tensor([0.05, 0.3, 0.5, 0.8, 0.99], dtype=torch.float64).view(1, 1, 1, 5)
    g = torch.Generator().manual_seed(7)
    state = g.get_state()
    samples = relaxed_bernoulli(mean, temperature, 4, generator=g)
    u = 0.0005 + 0.999 * torch.rand((4, 1, 1, 1, 5), dtype=torch.float64, generator=g.set_state(state))
    expected = torch.sigmoid((torch.log(mean / (1 - mean)) + torch.log(u / (1 - u))) / temperature)
    assert torch.allclose(samples, expected, rtol=1e-12, atol=1e-15)


def test_lower_temperature_gives_sharper_samples_and_the_net_samples_with_its_own():
    """t -> 0 pushes samples to 0 or 1; large t pulls them to 0.5. The net samples with its own t."""
    mean = torch.full((1, 1, 64, 64), 0.3)
    sharpness = []
    for temperature in (0.05, 0.1, 0.5, 1.0, 5.0):
        net = build_network({'type': 'TLWWeightingNet', 'num_feat': 4, 'temperature': temperature})
        torch.manual_seed(0)
        samples = net.sample(mean, 4)
        torch.manual_seed(0)
        assert torch.equal(samples, relaxed_bernoulli(mean, temperature, 4))
        sharpness.append((samples - 0.5).abs().mean().item())
    assert sharpness == sorted(sharpness, reverse=True) and sharpness[0] > 0.45 and sharpness[-1] < 0.15


def test_fixed_sum_runs_in_float32_for_half_precision_and_keeps_float64():
    """FixedSum's image-wide sums: half-precision activations are summed in float32 (a bfloat16 sum of
    24*20 values is off by far more than 1e-4), float64 stays float64 (gradcheck precision)."""
    torch.manual_seed(0)
    net = build_network({'type': 'TLWWeightingNet', 'num_feat': 4, 'k': 0.3}).eval()
    gt, sr = torch.rand(2, 3, 24, 20), torch.rand(2, 3, 24, 20)
    target = torch.full((2, 3), 0.999 * 0.3 + 0.0005)
    half = net.to(torch.bfloat16)(gt.bfloat16(), sr.bfloat16())
    assert half.dtype == torch.float32
    assert torch.allclose(half.mean(dim=(-2, -1)), target, atol=1e-6)
    double = net.to(torch.float64)(gt.double(), sr.double())
    assert double.dtype == torch.float64
    assert torch.allclose(double.mean(dim=(-2, -1)), target.double(), atol=1e-12)
