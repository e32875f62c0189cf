"""UDLLoss: the ESU loss (eq. 2) and the uncertainty-weighted L1 (eq. 3), by hand and by gradcheck."""
import pytest
import torch

from losses_plugin.losses.udl_loss import UDLLoss, udl_weights


def test_esu_by_hand():
    pred = torch.tensor([[[[0.5, 0.2]]]])
    target = torch.tensor([[[[0.1, 0.2]]]])
    s = torch.tensor([[[[0.0, 1.0]]]])
    # mean(exp(-s)|e|) + 2 mean(s) = (0.4 + 0)/2 + 2 * 0.5
    assert UDLLoss('esu')(pred, target, s).item() == pytest.approx(0.2 + 1.0)


def test_udl_weights_are_one_at_each_image_and_channel_minimum():
    s = torch.tensor([[[[2.0, 3.0]], [[-1.0, 1.0]]], [[[5.0, 5.5]], [[0.0, 0.0]]]])
    assert torch.equal(udl_weights(s), torch.tensor([[[[1.0, 2.0]], [[1.0, 3.0]]], [[[1.0, 1.5]], [[1.0, 1.0]]]]))


def test_udl_by_hand_and_s_gets_no_gradient():
    pred = torch.tensor([[[[0.5, 0.2, 0.0]]]], requires_grad=True)
    target = torch.tensor([[[[0.1, 0.1, 0.3]]]])
    s = torch.tensor([[[[0.0, 2.0, 1.0]]]], requires_grad=True)
    loss = UDLLoss('udl')(pred, target, s)
    assert loss.item() == pytest.approx((1 * 0.4 + 3 * 0.1 + 2 * 0.3) / 3)
    loss.backward()
    assert s.grad is None and torch.allclose(pred.grad, torch.tensor([[[[1.0, 3.0, -2.0]]]]) / 3)


def test_esu_gradcheck_in_pred_and_s():
    torch.manual_seed(0)
    pred = torch.rand(2, 3, 4, 4, dtype=torch.float64, requires_grad=True)
    target = torch.rand(2, 3, 4, 4, dtype=torch.float64)
    s = torch.randn(2, 3, 4, 4, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda p, u: UDLLoss('esu')(p, target, u), (pred, s))


def test_the_esu_optimum_of_s_is_the_log_of_half_the_error():
    # d/ds [exp(-s)|e| + 2s] = 0  <=>  s = log(|e|/2): the head learns the error's scale
    error = torch.tensor([0.02, 0.2])
    s = torch.zeros(1, 1, 1, 2, requires_grad=True)
    optimiser = torch.optim.Adam([s], lr=0.05)
    for _ in range(2000):
        optimiser.zero_grad()
        UDLLoss('esu')(error.view(1, 1, 1, 2), torch.zeros(1, 1, 1, 2), s).backward()
        optimiser.step()
    assert torch.allclose(s.detach().view(-1), torch.log(error / 2), atol=1e-2)


def test_missing_s_and_bad_options_are_clear_errors():
    with pytest.raises(ValueError, match='UDLLoss needs the uncertainty s.*UDLModel'):
        UDLLoss()(torch.rand(1, 3, 4, 4), torch.rand(1, 3, 4, 4))
    with pytest.raises(ValueError, match="UDLLoss: option 'stage'"):
        UDLLoss(stage='both')
    with pytest.raises(ValueError, match='does not broadcast'):
        UDLLoss()(torch.rand(1, 3, 4, 4), torch.rand(1, 3, 4, 4), torch.rand(1, 2, 4, 4))
