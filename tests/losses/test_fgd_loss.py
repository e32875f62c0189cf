"""FineGrainedDynamicLoss, eq. (3)-(6): each term by hand, its minimum, and its errors."""
import math

import pytest
import torch

from losses_plugin.fgd_bins import bin_anchors, bin_index
from losses_plugin.losses.fgd_loss import FineGrainedDynamicLoss, average_loss, class_loss


def perfect(gt, num_bins=32, regions=(2, 2)):
    logits = torch.full((gt.shape[0], num_bins, *gt.shape[1:]), -50.0)
    logits.scatter_(1, bin_index(gt, num_bins).unsqueeze(1), 50.0)
    probs = torch.zeros(gt.shape[0], 3, *regions)
    probs[:, 1] = 1
    return logits, probs


def test_class_loss_is_lowest_for_one_hot_probabilities():
    one_hot = torch.tensor([0.0, 1.0, 0.0]).view(1, 3, 1, 1)
    uniform = torch.full((1, 3, 1, 1), 1 / 3)
    assert class_loss(one_hot).item() == pytest.approx(-2.0)  # |1-0| + |1-0| + |0-0|
    assert class_loss(uniform).item() == pytest.approx(0.0)
    torch.manual_seed(0)
    random = torch.softmax(torch.randn(64, 3, 1, 1), dim=1)
    per_region = torch.stack([class_loss(random[i:i + 1]) for i in range(64)])
    assert (per_region > -2).all() and (per_region <= 0).all()
    # by hand: P = (0.5, 0.3, 0.2): -(0.2 + 0.3 + 0.1)
    assert class_loss(torch.tensor([0.5, 0.3, 0.2]).view(1, 3, 1, 1)).item() == pytest.approx(-0.6)


def test_average_loss_by_hand():
    probs = torch.tensor([[1.0, 0.0, 0.0], [1.0, 0.0, 0.0]]).view(2, 3, 1, 1)
    assert average_loss(probs).item() == pytest.approx(2 / 3 + 1 / 3 + 1 / 3)
    assert average_loss(torch.full((2, 3, 1, 1), 1 / 3)).item() == pytest.approx(0.0, abs=1e-7)


def test_with_a_perfect_classifier_and_regression_the_loss_is_minimal():
    torch.manual_seed(0)
    gt = torch.rand(2, 3, 8, 8)
    logits, probs = perfect(gt)
    loss = FineGrainedDynamicLoss(alpha=0.5, beta=0.5)
    terms = loss.terms(gt.clone(), gt, logits, probs)
    assert terms['l_r'].item() == 0 and terms['l_c1'].item() < 1e-6 and terms['l_c2'].item() == pytest.approx(-2)
    best = loss(gt.clone(), gt, logits, probs).item()
    assert best == pytest.approx(0.5 * -2, abs=1e-6)
    for _ in range(5):  # anything else scores higher
        noisy = (gt + 0.05 * torch.randn_like(gt)).clamp(0, 1)
        other = loss(noisy, gt, torch.randn_like(logits), torch.softmax(torch.randn_like(probs), dim=1)).item()
        assert other > best


def test_bin_cross_entropy_by_hand():
    gt = torch.tensor([0.1, 0.9]).view(1, 1, 1, 2)  # bins 0 and 1 of K = 2
    logits = torch.tensor([[2.0, 0.0], [0.0, 1.0]]).T.reshape(1, 2, 1, 1, 2)  # (N, K, C, H, W)
    terms = FineGrainedDynamicLoss().terms(gt, gt, logits)  # K = 2 from the logits
    expected = (-math.log(math.exp(2) / (math.exp(2) + 1)) - math.log(math.e / (1 + math.e))) / 2
    assert terms['l_c1'].item() == pytest.approx(expected, rel=1e-6) and 'l_c2' not in terms


def test_regression_target_anchor_regresses_to_bin_centres():
    gt = torch.tensor([0.1, 0.3]).view(1, 1, 1, 2)
    logits, _ = perfect(gt, num_bins=4)
    anchors = bin_anchors(4).float()[bin_index(gt, 4)]
    loss = FineGrainedDynamicLoss(regression_target='anchor')  # K = 4 from the logits
    assert loss.terms(anchors, gt, logits)['l_r'].item() == 0
    assert loss.terms(gt, gt, logits)['l_r'].item() == pytest.approx((0.125 - 0.1 + 0.375 - 0.3) / 2)


def test_bad_inputs_and_options_are_clear_errors():
    gt = torch.rand(1, 3, 4, 4)
    with pytest.raises(ValueError, match='needs the bin logits of FGDNet.*FGDModel'):
        FineGrainedDynamicLoss()(gt, gt)
    with pytest.raises(ValueError, match=r'logits must be \(N, K, C, H, W\)'):
        FineGrainedDynamicLoss()(gt, gt, torch.rand(1, 16, 3, 4, 5))
    with pytest.raises(ValueError, match=r'K >= 2'):
        FineGrainedDynamicLoss()(gt, gt, torch.rand(1, 1, 3, 4, 4))
    with pytest.raises(TypeError, match='num_bins'):  # K comes from the logits, not from a second option
        FineGrainedDynamicLoss(num_bins=32)
    with pytest.raises(ValueError, match="option 'regression_target'"):
        FineGrainedDynamicLoss(regression_target='bins')
    with pytest.raises(ValueError, match="option 'alpha'"):
        FineGrainedDynamicLoss(alpha=-1)


def test_sr_weight_adds_l1_on_the_unconfined_output_and_zero_is_the_literal_loss():
    torch.manual_seed(0)
    gt, sr, out = torch.rand(1, 3, 4, 4), torch.rand(1, 3, 4, 4), torch.rand(1, 3, 4, 4)
    logits, probs = perfect(gt, regions=(1, 1))
    literal = FineGrainedDynamicLoss(sr_weight=0)
    ours = FineGrainedDynamicLoss(sr_weight=0.5)
    assert 'l_sr' not in literal.terms(out, gt, logits, probs, sr)
    difference = ours(out, gt, logits, probs, sr) - literal(out, gt, logits, probs, sr)
    assert difference.item() == pytest.approx(0.5 * (sr - gt).abs().mean().item(), rel=1e-6)


def test_a_non_finite_total_is_returned_for_the_training_step_to_handle():
    gt = torch.rand(1, 3, 4, 4)
    logits, probs = perfect(gt, regions=(1, 1))
    sr = gt.clone()
    sr[0, 0, 0, 0] = float('inf')
    total = FineGrainedDynamicLoss()(gt.clone(), gt, logits, probs, sr)  # no exception: the step policy skips it
    assert not torch.isfinite(total)
