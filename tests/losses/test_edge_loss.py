"""EdgeLoss: MPRNet's edge loss (eq. 3 of the MPRNet paper, the authors' losses.EdgeLoss): Charbonnier
between one Laplacian-pyramid level of the output and of the ground truth."""
import pytest
import torch
import torch.nn.functional as F
from basicsr.losses import build_loss

from losses_plugin.checks import OptionError
from losses_plugin.losses.edge_loss import EdgeLoss, pyramid_laplacian


def authors_laplacian(img):
    """The authors' recipe written out: one 5x5 window outer(k, k), k = [.05 .25 .4 .25 .05], replicate
    padding, keep every second pixel (times 4) in an image of zeros, filter again, subtract."""
    k = torch.tensor([[.05, .25, .4, .25, .05]], dtype=img.dtype)
    window = (k.t() @ k).expand(img.shape[1], 1, 5, 5)

    def filt(x):
        return F.conv2d(F.pad(x, (2, 2, 2, 2), mode='replicate'), window, groups=img.shape[1])

    filtered = filt(img)
    kept = torch.zeros_like(filtered)
    kept[:, :, ::2, ::2] = filtered[:, :, ::2, ::2] * 4
    return img - filt(kept)


def test_pyramid_laplacian_matches_the_authors_recipe():
    img = torch.rand(2, 3, 17, 20, dtype=torch.float64)
    assert torch.allclose(pyramid_laplacian(img), authors_laplacian(img), atol=1e-12)


def test_a_flat_image_has_no_edges_inside():
    lap = pyramid_laplacian(torch.full((1, 1, 12, 12), 0.3, dtype=torch.float64))
    assert lap[..., 2:-2, 2:-2].abs().max() < 1e-12  # (replicate padding of the zero-filled image marks the border)


def test_loss_is_charbonnier_of_the_laplacian_difference_with_basicsr_eps():
    pred, target = torch.rand(2, 3, 16, 16, dtype=torch.float64), torch.rand(2, 3, 16, 16, dtype=torch.float64)
    diff = authors_laplacian(pred) - authors_laplacian(target)
    # the authors' CharbonnierLoss(eps=1e-3): sqrt(d^2 + eps^2); here eps is added unsquared, as in BasicSR
    expected = torch.sqrt(diff ** 2 + 1e-3 ** 2).mean()
    assert EdgeLoss()(pred, target).item() == pytest.approx(expected.item(), rel=1e-12)
    loss = build_loss({'type': 'EdgeLoss', 'loss_weight': 0.05, 'eps': 1e-6})
    assert loss(pred, target).item() == pytest.approx(0.05 * expected.item(), rel=1e-12)
    assert EdgeLoss(reduction='none')(pred, target).shape == pred.shape


def test_gradient_reaches_pred_only():
    pred = torch.rand(1, 3, 16, 16, requires_grad=True)
    target = torch.rand(1, 3, 16, 16, requires_grad=True)
    EdgeLoss()(pred, target).backward()
    assert pred.grad.abs().sum() > 0 and target.grad is None


def test_options_and_inputs_are_checked():
    with pytest.raises(OptionError, match="EdgeLoss: option 'eps'"):
        EdgeLoss(eps=-1)
    with pytest.raises(OptionError, match="EdgeLoss: option 'reduction'"):
        EdgeLoss(reduction='avg')
    with pytest.raises(ValueError, match='EdgeLoss: pred and target must have the same shape'):
        EdgeLoss()(torch.rand(1, 3, 8, 8), torch.rand(1, 3, 8, 9))
