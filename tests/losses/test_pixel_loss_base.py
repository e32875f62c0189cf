"""Shared mechanics of the pixel losses: base errors against BasicSR's, reductions and loss_weight."""
import pytest
import torch
from basicsr.losses.basic_loss import CharbonnierLoss, L1Loss, MSELoss

from losses_plugin.losses.pixel_loss_base import base_error
from losses_plugin.losses.sp_loss import SPLoss


def test_base_errors_equal_basicsrs_losses_down_to_tiny_errors():
    """Charbonnier's eps is BasicSR's 1e-12: at errors of 1e-5 a larger eps would dominate."""
    pred = torch.tensor([[[[1e-5, -3e-4, 0.2, 0.0]]]], dtype=torch.float64)
    target = torch.zeros_like(pred)
    for base, reference in (('l1', L1Loss), ('mse', MSELoss), ('charbonnier', CharbonnierLoss)):
        expected = reference(reduction='none')(pred, target)
        assert torch.allclose(base_error(pred, target, base), expected, rtol=1e-12, atol=0), base


def test_reductions_and_loss_weight_on_alpha_zero():
    """alpha 0 is L1, so the reductions can be read off by hand: mean, sum, none, times loss_weight."""
    pred = torch.tensor([[[[0.5, 0.0], [0.25, 1.0]]]])
    target = torch.zeros_like(pred)
    assert SPLoss(alpha=0, loss_weight=2.0)(pred, target).item() == pytest.approx(2 * 1.75 / 4)
    assert SPLoss(alpha=0, reduction='sum', loss_weight=0.5)(pred, target).item() == pytest.approx(0.5 * 1.75)
    assert torch.equal(SPLoss(alpha=0, reduction='none', loss_weight=3.0)(pred, target), 3 * pred)
    assert SPLoss(alpha=1.0, loss_weight=2.0)(pred, target).item() == pytest.approx(
        2 * SPLoss(alpha=1.0)(pred, target).item())
