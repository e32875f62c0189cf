"""Separable Gaussian filtering of many channels by several Gaussians at once (Zhao et al.'s G_sigma).

One horizontal and one vertical 1-D filter replace a (2r+1)^2 window: for the 33x33 window of
sigma 8 that is 66 instead of 1089 multiply-adds per pixel and Gaussian. For training-patch sizes
(wide windows) each 1-D pass is a product with a banded Toeplitz matrix holding all
K Gaussians: BLAS does those several times faster than depthwise convolutions do on a CPU, although
most of the matrix is zeros. Where the window is small against the image (side > MATMUL_MAX_RATIO
window widths) the zeros dominate, and two depthwise convolutions are faster.
"""
from functools import lru_cache

import torch
import torch.nn.functional as F

from losses_plugin.checks import OptionError, is_number

PADDINGS = ('valid', 'reflect', 'zero')
MATMUL_MAX_RATIO = 8  # measured crossover on CPU: 33 taps at 128 px by matmul, 11 taps by conv


def check_sigmas(loss_name, sigmas):
    if not sigmas or any(not is_number(s) or s <= 0 for s in sigmas):
        raise OptionError(f"{loss_name}: option 'sigmas' must be a non-empty list of positive numbers, got {sigmas!r}")


def check_window_fits(owner, size, radius, padding):
    """Raises ValueError, naming ``owner``, where a (2*radius+1)^2 window cannot filter (H, W) images by ``padding``."""
    h, w = size
    if padding == 'valid' and min(h, w) < 2 * radius + 1:
        raise ValueError(f'{owner}: a {2 * radius + 1}x{2 * radius + 1} Gaussian window does not fit a {h}x{w} image '
                         "with padding 'valid'; use padding 'reflect' or 'zero', or a smaller sigma")
    if padding == 'reflect' and min(h, w) <= radius:
        raise ValueError(f"{owner}: padding 'reflect' by {radius} needs images larger than {radius} px, got {h}x{w}")


def gaussian_kernel_1d(sigma, radius, dtype=torch.float32, device=None):
    """Normalised samples of a Gaussian of std ``sigma`` at -radius..radius."""
    x = torch.arange(-radius, radius + 1, dtype=torch.float64, device=device)
    kernel = torch.exp(-x ** 2 / (2 * sigma ** 2))
    return (kernel / kernel.sum()).to(dtype)


def gaussian_filter(x, sigmas, radius, padding='valid'):
    """Filters every channel of ``x`` with each Gaussian of ``sigmas`` (all of support 2*radius+1).

    Args:
        x (Tensor): (N, C, H, W).
        sigmas (sequence[float]): K standard deviations.
        radius (int): half the window size.
        padding (str): 'valid' (output shrinks by 2*radius), 'reflect' or 'zero' (same size).
    Returns:
        Tensor: (N, C, K, H', W').
    """
    n, c, h, w = x.shape
    check_window_fits('gaussian_filter', (h, w), radius, padding)
    if padding == 'reflect':
        x = F.pad(x, (radius, radius, radius, radius), mode='reflect')
    elif padding == 'zero':
        x = F.pad(x, (radius, radius, radius, radius))
    if filters_by_matmul((h, w), radius, padding):
        return _filter_by_matmul(x, tuple(sigmas), radius)
    k = len(sigmas)
    kernels = torch.stack([gaussian_kernel_1d(s, radius, x.dtype, x.device) for s in sigmas])
    # depthwise: each channel is a group with K horizontal kernels, then each of the C*K maps is
    # filtered vertically by its own kernel (a batch of single-channel convolutions is ~15x slower on CPU)
    rows = F.conv2d(x, kernels.repeat(c, 1).view(c * k, 1, 1, -1), groups=c)
    both = F.conv2d(rows, kernels.repeat(c, 1).view(c * k, 1, -1, 1), groups=c * k)
    return both.view(n, c, k, *both.shape[-2:])


def filters_by_matmul(size, radius, padding='valid'):
    """Whether :func:`gaussian_filter` takes the banded-matrix route for (H, W) images padded by ``padding``."""
    padded = max(size) + (0 if padding == 'valid' else 2 * radius)
    return padded <= MATMUL_MAX_RATIO * (2 * radius + 1)


@lru_cache(maxsize=64)
def _banded_gaussians(sigmas, radius, size, dtype, device):
    """(K, size, size - 2*radius): column j holds each Gaussian at rows j..j+2*radius."""
    out = size - 2 * radius
    kernels = torch.stack([gaussian_kernel_1d(s, radius, dtype, device) for s in sigmas])
    matrix = torch.zeros(len(sigmas), size, out, dtype=dtype, device=device)
    diagonal = torch.arange(out, device=device)
    for tap in range(2 * radius + 1):
        matrix[:, diagonal + tap, diagonal] = kernels[:, tap:tap + 1]
    return matrix


def _filter_by_matmul(x, sigmas, radius):
    """'valid' filtering of padded ``x`` (N, C, H, W) -> (N, C, K, H', W') by two matrix products."""
    n, c, h, w = x.shape
    k = len(sigmas)
    horizontal = _banded_gaussians(sigmas, radius, w, x.dtype, x.device)  # (K, W, W')
    rows = x @ horizontal.permute(1, 0, 2).reshape(w, -1)  # one product: (N, C, H, K*W')
    w_out = rows.shape[-1] // k
    # each Gaussian's vertical pass as one large product: (K, N*C*W', H) @ (K, H, H')
    rows = rows.view(n, c, h, k, w_out).permute(3, 0, 1, 4, 2).reshape(k, n * c * w_out, h)
    both = torch.bmm(rows, _banded_gaussians(sigmas, radius, h, x.dtype, x.device))
    return both.view(k, n, c, w_out, -1).permute(1, 2, 0, 4, 3)  # (N, C, K, H', W'), a view
