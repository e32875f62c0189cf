"""FixedSum, eq. (5)-(6) of the TLW paper: the sum, the range, the derivative and the edge cases."""
import pytest
import torch

from losses_plugin.archs.fixed_sum import FixedSum, fixed_sum


def test_hand_computed_2x2():
    # N = 4, S = 1.2, k = 0.5: kN = 2 > S, so x + (2 - 1.2)/(4 - 1.2) * (1 - x) = x + (2/7)(1 - x)
    x = torch.tensor([[0.2, 0.4], [0.6, 0.0]], dtype=torch.float64)
    expected = torch.tensor([[0.2 + 0.8 * 2 / 7, 0.4 + 0.6 * 2 / 7], [0.6 + 0.4 * 2 / 7, 2 / 7]], dtype=torch.float64)
    assert torch.allclose(fixed_sum(x, 0.5), expected, atol=1e-15)
    # k = 0.2: kN = 0.8 <= S, so x - (1.2 - 0.8)/1.2 * x = x * 2/3
    assert torch.allclose(fixed_sum(x, 0.2), x * 2 / 3, atol=1e-15)


@pytest.mark.parametrize('k', [0.1, 0.3, 0.5, 0.9, 1.0])
@pytest.mark.parametrize('spread', ['low', 'high', 'uniform'])
def test_sum_is_kn_per_image_and_channel_and_values_stay_in_0_1(k, spread):
    torch.manual_seed(0)
    x = torch.rand(3, 2, 17, 13, dtype=torch.float64)
    x = {'low': x ** 4, 'high': x ** 0.25, 'uniform': x}[spread]
    out = fixed_sum(x, k)
    assert torch.allclose(out.sum(dim=(-2, -1)), torch.full((3, 2), k * 17 * 13, dtype=torch.float64))
    assert out.min() >= 0 and out.max() <= 1 + 1e-12


@pytest.mark.parametrize('value, k', [(0.0, 0.3), (1.0, 0.3), (1.0, 1.0), (0.0, 1.0)])
def test_edges_s_zero_and_s_n_are_finite_with_finite_gradients(value, k):
    x = torch.full((1, 1, 4, 4), value, dtype=torch.float64, requires_grad=True)
    out = fixed_sum(x, k)
    assert torch.allclose(out, torch.full_like(out, k))  # all-equal inputs can only become k each
    out.pow(2).sum().backward()
    assert torch.isfinite(x.grad).all()


def eq6(x, k):
    """The diagonal derivative printed as eq. (6)."""
    n, s = x.numel(), x.sum()
    if k * n > s:
        return n * (1 - k) * (n - s + x - 1) / (n - s) ** 2
    return k * n * (s - x) / s ** 2


@pytest.mark.parametrize('k', [0.3, 0.6])
@pytest.mark.parametrize('power', [3.0, 0.3])  # S below and above kN
def test_diagonal_derivative_matches_eq6_and_its_bound(k, power):
    torch.manual_seed(1)
    x = torch.rand(6, 5, dtype=torch.float64) ** power
    jacobian = torch.autograd.functional.jacobian(lambda t: fixed_sum(t, k), x).reshape(30, 30)
    assert torch.allclose(jacobian.diagonal(), eq6(x, k).reshape(-1), atol=1e-12)
    n, s = x.numel(), x.sum()
    assert s * (n - s) > n  # where the bound holds (see the next test)
    bound = 1 - k if k * n > s else k
    assert (jacobian.diagonal() > bound).all()


def test_the_bound_of_eq6_needs_s_away_from_0_and_n():
    # eq. (6)'s "> 1 - k" holds iff S(N - S) > N(1 - x_i); with S close to N it fails, which the paper omits
    x = torch.ones(1, 10, dtype=torch.float64)
    x[0, 0] = 0.1
    k = 0.95  # kN = 9.5 > S = 9.1, and S(N - S) = 8.19 < N(1 - x_0) = 9
    derivative = torch.autograd.functional.jacobian(lambda t: fixed_sum(t, k), x)[0, 0, 0, 0]
    assert derivative == pytest.approx(eq6(x, k)[0, 0].item(), abs=1e-12)
    assert derivative < 1 - k


def test_gradcheck_float64():
    torch.manual_seed(2)
    for power, k in ((2.0, 0.4), (0.5, 0.4)):
        x = (torch.rand(2, 3, 5, 4, dtype=torch.float64) ** power).requires_grad_()
        assert torch.autograd.gradcheck(lambda t: fixed_sum(t, k), (x,))


@pytest.mark.parametrize('k', [0, -0.1, 1.5, 'a', True])
def test_invalid_k_is_a_clear_error(k):
    with pytest.raises(ValueError, match=r'FixedSum: k .* in \(0, 1\]'):
        FixedSum(k)
