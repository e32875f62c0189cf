"""FixedSum activation, eq. (5)-(6) of the TLW paper (``trainable_loss_weights_tlw.txt``).

For each image and channel, x in [0, 1] over N = H*W pixels with sum S is moved linearly towards 1
(when S < kN) or towards 0 (when S > kN) so that the sum becomes exactly kN and every element stays
in [0, 1]:

    kN > S:  x + (kN - S) / (N - S) * (1 - x)
    kN <= S: x - (S - kN) / S * x
"""
import torch
from torch import nn

from losses_plugin.checks import is_number


def check_k(k):
    if not is_number(k) or not 0 < k <= 1:
        raise ValueError(f'FixedSum: k (the target mean weight) must be a number in (0, 1], got {k!r}')


def fixed_sum(x, k):
    """Eq. (5) over the last two dimensions of ``x`` (values in [0, 1]); the output sums to ``k*H*W``.

    Finite at S = 0 and S = N: a coefficient is only divided by N - S (or S) when that is positive.
    """
    check_k(k)
    n = x.shape[-2] * x.shape[-1]
    s = x.sum(dim=(-2, -1), keepdim=True)
    target = k * n
    tiny = torch.finfo(x.dtype).tiny
    # relu keeps one branch per image/channel; the clamp only ever acts where the numerator is 0
    towards_one = torch.relu(target - s) / (n - s).clamp_min(tiny)
    towards_zero = torch.relu(s - target) / s.clamp_min(tiny)
    return x + towards_one * (1 - x) - towards_zero * x


class FixedSum(nn.Module):
    """Module form of :func:`fixed_sum` with a settable ratio ``k`` (the TLW k schedule sets it per epoch)."""

    def __init__(self, k=0.3):
        super().__init__()
        check_k(k)
        self.k = k

    def set_k(self, k):
        check_k(k)
        self.k = k

    def forward(self, x):
        return fixed_sum(x, self.k)

    def extra_repr(self):
        return f'k={self.k}'
