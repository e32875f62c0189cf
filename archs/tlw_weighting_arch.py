"""The TLW weighting network (section III-B and Fig. 3 of ``trainable_loss_weights_tlw.txt``).

Layer widths, kernels, BatchNorm, the output squash ``0.999*w + 0.0005`` and the sampling bounds
follow the public reference code, which the paper's "four-layer convolutional network" leaves open.
"""
import torch
from basicsr.utils.registry import ARCH_REGISTRY
from torch import nn

from losses_plugin.checks import check_choice, check_integer, check_number
from losses_plugin.archs.fixed_sum import FixedSum

SQUASH = 0.999  # w -> SQUASH*w + (1 - SQUASH)/2 keeps the Bernoulli means away from 0 and 1
NOISE_BOUND = 0.0005  # u ~ U(NOISE_BOUND, 1 - NOISE_BOUND) for the relaxed Bernoulli samples


def relaxed_bernoulli(mean, temperature, num_samples, generator=None):
    """``num_samples`` relaxed Bernoulli (binary Concrete) samples of per-element means in (0, 1):
    ``sigmoid((logit(mean) + logit(u)) / temperature)``; differentiable in ``mean``.

    Returns:
        Tensor: (num_samples, *mean.shape).
    """
    u = torch.rand((num_samples, *mean.shape), device=mean.device, dtype=mean.dtype, generator=generator)
    u = u * (1 - 2 * NOISE_BOUND) + NOISE_BOUND
    logits = torch.log(mean) - torch.log1p(-mean) + torch.log(u) - torch.log1p(-u)
    return torch.sigmoid(logits / temperature)


@ARCH_REGISTRY.register()
class TLWWeightingNet(nn.Module):
    """g_phi(x, x_hat): per-pixel, per-channel Bernoulli means of the loss weights, summing to k*H*W.

    ``cat([gt, sr])`` -> conv 7x7 -> BN -> ReLU -> conv 5x5 -> BN -> ReLU -> conv 3x3 -> BN -> ReLU
    -> conv 3x3 -> sigmoid -> FixedSum(k) (eq. 5) -> ``0.999*w + 0.0005``.

    Args:
        num_in_ch (int): channels of one image (the net sees two). Default: 3.
        num_feat (int): width of the hidden layers (64 in the paper's code). Default: 64.
        k (float): initial ratio of the weight sum to H*W; TLWModel's k schedule overrides it. Default: 0.3.
        temperature (float): relaxed-Bernoulli temperature t. Default: 0.1.
        num_samples (int): T, the samples weighting the SR loss (eq. 11/13). Default: 3.
        channels_last (bool): run the convolutions in channels-last layout; the same values, and on a CPU
            the full-resolution 7x7/5x5 layers train ~30% faster (measured by
            ``scripts/benchmark_training_step.py``); cuDNN prefers it for half precision. Default: true.
    """

    def __init__(self, num_in_ch=3, num_feat=64, k=0.3, temperature=0.1, num_samples=3, channels_last=True):
        super().__init__()
        check_number('TLWWeightingNet', 'temperature', temperature, above=0)
        check_number('TLWWeightingNet', 'k', k, above=0, maximum=1)
        check_integer('TLWWeightingNet', 'num_samples', num_samples, 1)
        check_choice('TLWWeightingNet', 'channels_last', channels_last, (True, False))
        self.temperature, self.num_samples = temperature, num_samples
        layers = []
        in_ch = 2 * num_in_ch
        for kernel in (7, 5, 3):
            layers += [nn.Conv2d(in_ch, num_feat, kernel, padding=kernel // 2), nn.BatchNorm2d(num_feat),
                       nn.ReLU(inplace=True)]
            in_ch = num_feat
        layers += [nn.Conv2d(num_feat, num_in_ch, 3, padding=1), nn.Sigmoid()]
        self.body = nn.Sequential(*layers)
        self.fixed_sum = FixedSum(k)
        self.memory_format = torch.channels_last if channels_last else torch.contiguous_format
        self.body.to(memory_format=self.memory_format)

    @property
    def k(self):
        return self.fixed_sum.k

    def set_k(self, k):
        self.fixed_sum.set_k(k)

    def forward(self, gt, sr):
        """Bernoulli means of the weights (eq. 5: FixedSum, then squashed into [0.0005, 0.9995]).

        Args:
            gt (Tensor): (N, C, H, W) reference.
            sr (Tensor): (N, C, H, W) SR output (detach it: only phi is trained here).

        Returns:
            Tensor: (N, C, H, W) Bernoulli means in [0.0005, 0.9995].
        """
        w = self.body(torch.cat([gt, sr], dim=1).contiguous(memory_format=self.memory_format))
        # under AMP the convolutions may run in half precision; FixedSum's image-wide sums stay in float32
        w = self.fixed_sum(w.float() if w.dtype in (torch.float16, torch.bfloat16) else w)
        return SQUASH * w + (1 - SQUASH) / 2

    def sample(self, mean, num_samples=None):
        """Relaxed Bernoulli weights w ~ MVB(mean); (num_samples or T, N, C, H, W)."""
        return relaxed_bernoulli(mean, self.temperature, num_samples or self.num_samples)
