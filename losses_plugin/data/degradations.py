"""Degradations that make a network's input from its ground truth, each ``f(img, rng, **options)``.

Images are float32 HWC arrays in [0, 1]; ``rng`` is a ``numpy.random.Generator``. A YAML list such
as ``[{type: gaussian_noise, sigma: 25}]`` is turned into callables by :func:`build_degradations`.
"""
from functools import partial

import numpy as np


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


def _check_gaussian_noise(where, sigma=None, sigma_range=None, clip=False):
    if (sigma is None) == (sigma_range is None):
        raise ValueError(f'{where}: give exactly one of sigma and sigma_range')
    if sigma is not None and (not isinstance(sigma, (int, float)) or sigma < 0):
        raise ValueError(f'{where}.sigma: expected a number >= 0 (0-255 scale), got {sigma!r}')
    if sigma_range is not None and (len(sigma_range) != 2 or not 0 <= sigma_range[0] <= sigma_range[1]):
        raise ValueError(f'{where}.sigma_range: expected [low, high] with 0 <= low <= high, got {sigma_range!r}')


DEGRADATIONS = {'gaussian_noise': (gaussian_noise, _check_gaussian_noise)}


def build_degradations(specs, where='degradations'):
    """YAML list of ``{type: NAME, **options}`` -> list of ``f(img, rng)``, checked up front."""
    if not isinstance(specs, (list, tuple)) or not specs:
        raise ValueError(f'{where}: expected a non-empty list of {{type: ..., options}}, got {specs!r}')
    built = []
    for i, spec in enumerate(specs):
        options = dict(spec)
        kind = options.pop('type', None)
        if kind not in DEGRADATIONS:
            raise ValueError(f"{where}[{i}].type: '{kind}' is not a degradation; known: {', '.join(DEGRADATIONS)}")
        function, check = DEGRADATIONS[kind]
        try:
            check(f'{where}[{i}]', **options)
        except TypeError as e:
            raise ValueError(f'{where}[{i}] ({kind}): {e}') from None
        built.append(partial(function, **options))
    return built


def apply_degradations(img, degradations, rng):
    for degrade in degradations:
        img = degrade(img, rng)
    return img
