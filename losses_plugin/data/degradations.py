"""Degradations that make a network's input from its ground truth, each ``f(img, rng, **options)``.

Images are float32 HWC arrays in [0, 1]; ``rng`` is a ``numpy.random.Generator``. A YAML list such
as ``[{type: gaussian_noise, sigma: 25}]`` is turned into callables by :func:`build_degradations`.
"""
from functools import partial

import cv2
import numpy as np

from losses_plugin.checks import OptionError, is_number

# Where each colour is sampled in a 2x2 Bayer tile, as (row, column) offsets; images are BGR (cv2).
BAYER_PATTERNS = {
    'rggb': {'r': [(0, 0)], 'g': [(0, 1), (1, 0)], 'b': [(1, 1)]},
    'bggr': {'b': [(0, 0)], 'g': [(0, 1), (1, 0)], 'r': [(1, 1)]},
    'grbg': {'g': [(0, 0), (1, 1)], 'r': [(0, 1)], 'b': [(1, 0)]},
    'gbrg': {'g': [(0, 0), (1, 1)], 'b': [(0, 1)], 'r': [(1, 0)]},
}
BGR_INDEX = {'b': 0, 'g': 1, 'r': 2}
# Bilinear interpolation of a sparse colour plane: green has 4 neighbours, red/blue 2 or 4.
GREEN_KERNEL = np.array([[0, 1, 0], [1, 4, 1], [0, 1, 0]], np.float32) / 4
RED_BLUE_KERNEL = np.array([[1, 2, 1], [2, 4, 2], [1, 2, 1]], np.float32) / 4


def gaussian_noise(img, rng, sigma=None, sigma_range=None, clip=False):
    """Additive white Gaussian noise, ``sigma`` on the 0-255 scale (DnCNN's convention).

    Args:
        sigma (float): fixed noise level, or
        sigma_range (list[float]): [low, high], a level drawn uniformly per image (blind denoising).
        clip (bool): clip the noisy image to [0, 1]. Default: False (DnCNN does not).
    """
    level = sigma if sigma is not None else rng.uniform(*sigma_range)
    noisy = img + rng.standard_normal(img.shape).astype(np.float32) * np.float32(level / 255.)
    return np.clip(noisy, 0, 1) if clip else noisy


def bayer_mask(shape, pattern='rggb'):
    """(H, W, 3) 0/1 mask of the samples a Bayer sensor records, BGR channel order."""
    mask = np.zeros(shape[:2] + (3,), np.float32)
    for colour, offsets in BAYER_PATTERNS[pattern].items():
        for dy, dx in offsets:
            mask[dy::2, dx::2, BGR_INDEX[colour]] = 1
    return mask


def bilinear_demosaic(sparse):
    """Fills the missing samples of a (H, W, 3) BGR mosaic (zeros where unsampled) bilinearly.

    Any of the four Bayer patterns: the kernels average the recorded neighbours wherever they are.

    ``BORDER_REFLECT_101`` keeps the pattern's parity at the borders, so recorded samples stay exact.
    """
    out = np.empty_like(sparse)
    for colour, index in BGR_INDEX.items():
        kernel = GREEN_KERNEL if colour == 'g' else RED_BLUE_KERNEL
        out[..., index] = cv2.filter2D(sparse[..., index], -1, kernel, borderType=cv2.BORDER_REFLECT_101)
    return out


def bayer_noise_demosaic(img, rng, pattern='rggb', noise_a=0.005, noise_b=0.0001, clip=True):
    """Zhao et al.'s acquisition model: Bayer mosaic, Poisson-Gaussian noise of Foi's model
    (variance ``a*x + b``), clipping to [0, 1], then bilinear demosaicking.

    Args:
        pattern (str): 'rggb' | 'bggr' | 'grbg' | 'gbrg'. Default: 'rggb'.
        noise_a (float): signal-dependent (photon shot) variance factor. Default: 0.005.
        noise_b (float): signal-independent variance. Default: 0.0001.
        clip (bool): clip the noisy raw samples to [0, 1]. Default: True.
    """
    if img.shape[2] != 3:
        raise ValueError(f'bayer_noise_demosaic needs 3-channel images, got {img.shape[2]} channels')
    mask = bayer_mask(img.shape, pattern)
    raw = img * mask
    std = np.sqrt(noise_a * raw + noise_b).astype(np.float32)
    noisy = raw + std * rng.standard_normal(raw.shape).astype(np.float32)
    if clip:
        noisy = np.clip(noisy, 0, 1)
    return bilinear_demosaic(noisy * mask)


def jpeg(img, rng, quality=25, grid_shift=False):
    """JPEG compression at ``quality`` (0-100), or at a quality drawn from ``[low, high]`` per image.

    ``grid_shift``: move JPEG's 8x8 block grid by a random 1-7 pixels in each direction against the
    image (reflect-padded, compressed, cropped back), as Zhao et al. (section 4.3) cut training patches
    whose block artifacts are not aligned with the patch.
    """
    level = quality if np.isscalar(quality) else int(rng.integers(quality[0], quality[1] + 1))
    as_uint8 = np.clip(np.round(img * 255), 0, 255).astype(np.uint8)
    dy, dx = (int(d) for d in rng.integers(1, 8, size=2)) if grid_shift else (0, 0)
    padded = np.pad(as_uint8, ((dy, 0), (dx, 0)) + ((0, 0),) * (img.ndim - 2), mode='reflect')
    ok, encoded = cv2.imencode('.jpg', padded, [cv2.IMWRITE_JPEG_QUALITY, int(level)])
    decoded = cv2.imdecode(encoded, cv2.IMREAD_UNCHANGED).reshape(padded.shape)
    return decoded[dy:, dx:].astype(np.float32) / 255.


def _check_flag(where, name, value):
    if not isinstance(value, bool):
        raise OptionError(f'{where}.{name}: expected true or false, got {value!r}')


def _check_bayer_noise_demosaic(where, pattern='rggb', noise_a=0.005, noise_b=0.0001, clip=True):
    if pattern not in BAYER_PATTERNS:
        raise OptionError(f"{where}.pattern: expected one of {', '.join(BAYER_PATTERNS)}, got {pattern!r}")
    for name, value in (('noise_a', noise_a), ('noise_b', noise_b)):
        if not is_number(value) or value < 0:
            raise OptionError(f'{where}.{name}: expected a number >= 0, got {value!r}')
    _check_flag(where, 'clip', clip)


def _check_jpeg(where, quality=25, grid_shift=False):
    _check_flag(where, 'grid_shift', grid_shift)
    def level(q):
        return isinstance(q, int) and not isinstance(q, bool) and 0 <= q <= 100

    pair = isinstance(quality, (list, tuple)) and len(quality) == 2 and all(map(level, quality))
    if not (level(quality) or pair and quality[0] <= quality[1]):
        raise OptionError(f'{where}.quality: expected an integer in [0, 100] or [low, high], got {quality!r}')


def _check_gaussian_noise(where, sigma=None, sigma_range=None, clip=False):
    if (sigma is None) == (sigma_range is None):
        raise OptionError(f'{where}: give exactly one of sigma and sigma_range')
    if sigma is not None and (not is_number(sigma) or sigma < 0):
        raise OptionError(f'{where}.sigma: expected a number >= 0 (0-255 scale), got {sigma!r}')
    if sigma_range is not None and (not isinstance(sigma_range, (list, tuple)) or len(sigma_range) != 2
                                    or not all(map(is_number, sigma_range)) or not 0 <= sigma_range[0] <= sigma_range[1]):
        raise OptionError(f'{where}.sigma_range: expected [low, high] with 0 <= low <= high, got {sigma_range!r}')
    _check_flag(where, 'clip', clip)


DEGRADATIONS = {
    'gaussian_noise': (gaussian_noise, _check_gaussian_noise),
    'bayer_noise_demosaic': (bayer_noise_demosaic, _check_bayer_noise_demosaic),
    'jpeg': (jpeg, _check_jpeg),
}


def build_degradations(specs, where='degradations'):
    """YAML list of ``{type: NAME, **options}`` -> list of ``f(img, rng)``, checked up front."""
    if not isinstance(specs, (list, tuple)) or not specs:
        raise OptionError(f'{where}: expected a non-empty list of {{type: ..., options}}, got {specs!r}')
    built = []
    for i, spec in enumerate(specs):
        options = dict(spec)
        kind = options.pop('type', None)
        if kind not in DEGRADATIONS:
            raise OptionError(f"{where}[{i}].type: '{kind}' is not a degradation; known: {', '.join(DEGRADATIONS)}")
        function, check = DEGRADATIONS[kind]
        try:
            check(f'{where}[{i}]', **options)
        except TypeError as e:
            raise OptionError(f'{where}[{i}] ({kind}): {e}') from None
        built.append(partial(function, **options))
    return built


def apply_degradations(img, degradations, rng):
    for degrade in degradations:
        img = degrade(img, rng)
    return img
