"""SRCNN and DnCNN: shapes, the layers the papers give, and the options."""
import pytest
import torch
from basicsr.archs import build_network
from torch import nn


def test_srcnn_is_9_5_5_with_64_32_widths_and_upsamples_itself():
    net = build_network({'type': 'SRCNN', 'upscale': 3})
    convs = [m for m in net.modules() if isinstance(m, nn.Conv2d)]
    assert [(c.in_channels, c.out_channels, c.kernel_size) for c in convs] == [(3, 64, (9, 9)), (64, 32, (5, 5)),
                                                                              (32, 3, (5, 5))]
    assert net(torch.rand(2, 3, 10, 12)).shape == (2, 3, 30, 36)


def test_srcnn_zhao_variant_prelu_bilinear_and_pre_upsampled_input():
    net = build_network({'type': 'SRCNN', 'upscale': 2, 'upsampling': 'bilinear', 'act': 'prelu'})
    assert sum(isinstance(m, nn.PReLU) for m in net.modules()) == 2
    assert net(torch.rand(1, 3, 8, 8)).shape == (1, 3, 16, 16)
    same = build_network({'type': 'SRCNN', 'upsampling': 'none', 'num_in_ch': 1, 'num_out_ch': 1})
    assert same(torch.rand(1, 1, 20, 20)).shape == (1, 1, 20, 20)
    with pytest.raises(ValueError, match="SRCNN: option 'upsampling'"):
        build_network({'type': 'SRCNN', 'upsampling': 'nearest'})


def test_dncnn_17_layers_and_residual_learning():
    net = build_network({'type': 'DnCNN', 'num_in_ch': 1, 'num_out_ch': 1})
    convs = [m for m in net.modules() if isinstance(m, nn.Conv2d)]
    assert len(convs) == 17 and sum(isinstance(m, nn.BatchNorm2d) for m in net.modules()) == 15
    x = torch.rand(2, 1, 16, 16)
    net.eval()
    assert torch.allclose(net(x), x - net.body(x))  # output = input - predicted noise
    plain = build_network({'type': 'DnCNN', 'num_conv': 5, 'residual': False})
    assert plain.eval()(torch.rand(1, 3, 8, 8)).shape == (1, 3, 8, 8)
    with pytest.raises(ValueError, match='residual learning needs'):
        build_network({'type': 'DnCNN', 'num_in_ch': 1, 'num_out_ch': 3})
