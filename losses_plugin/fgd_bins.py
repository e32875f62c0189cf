"""The bin maths of the fine-grained dynamic loss (``fine_grained_dynamic_loss.txt``, eq. 1-2 and Fig. 3),
once, for FGDNet, FineGrainedDynamicLoss and FGDModel. Imports only torch.

On BasicSR's [0, 1] range (the paper counts 0..2^n): K bins with thresholds ``t_i = i/K`` (eq. 1) and
anchors ``A_i = (t_i + t_{i+1})/2`` (eq. 2); a value z with ``t_i <= z < t_{i+1}`` belongs to bin i (its
"gt anchor"), 1.0 joins the last bin. An anchor area of ``a`` bins (odd: the predicted bin and
``(a-1)/2`` bins either side, Fig. 3) spans ``A_b +- h`` with the half-width ``h = a/(2K)``.

    >>> bin_index(torch.tensor([0.0, 0.5, 1.0]), 4)
    tensor([0, 2, 3])
    >>> anchor_of(torch.tensor([0, 3]), 4)
    tensor([0.1250, 0.8750])
"""
import torch


def bin_thresholds(num_bins):
    """Eq. (1): ``t_i = i/K``, i = 0..K (float64, K + 1 values)."""
    return torch.arange(num_bins + 1, dtype=torch.float64) / num_bins


def bin_anchors(num_bins):
    """Eq. (2): ``A_i = (t_i + t_{i+1})/2``, i = 0..K-1 (float64)."""
    t = bin_thresholds(num_bins)
    return (t[:-1] + t[1:]) / 2


def bin_index(values, num_bins):
    """The bin i with ``t_i <= z < t_{i+1}`` of each value z (long; values outside [0, 1] clamp to the
    first or last bin, 1.0 joins the last)."""
    return (values * num_bins).floor().clamp_(0, num_bins - 1).long()


def bin_position(values, num_bins):
    """Each value in bin units, 0 at the first anchor and k at anchor k: ``z*K - 0.5`` (the inverse of
    :func:`anchor_of`; not rounded or clamped)."""
    return values * num_bins - 0.5


def anchor_of(bins, num_bins, dtype=torch.float32):
    """Eq. (2) for bin indices: the anchor ``(b + 0.5)/K`` of each bin b."""
    return (bins.to(dtype) + 0.5) / num_bins


def anchor_target(values, num_bins):
    """Eq. (5) read literally: the gt anchor of each value, the regression target of
    ``regression_target: anchor``."""
    return anchor_of(bin_index(values, num_bins), num_bins, values.dtype)


def area_half_width(area_size, num_bins):
    """``h = a/(2K)``: an area of ``a`` bins centred on an anchor spans ``A_b +- h``. ``area_size`` may be
    a number or a tensor of sizes."""
    return area_size / (2 * num_bins)


def confine(sr, anchor, area_size, num_bins):
    """The area regression: ``A_b + h*tanh((sr - A_b)/h)``, ``h = a/(2K)``: always inside the area of
    ``area_size`` bins centred on the anchor's bin, close to sr near the anchor (slope 1 there)."""
    half = area_half_width(area_size, num_bins)
    return anchor + half * torch.tanh((sr - anchor) / half)
