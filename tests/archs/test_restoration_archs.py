"""SRCNN, DnCNN, VDSR and LapSRN: shapes, the layers the papers give, the options, and each forward against its
layers applied by hand."""
import pytest
import torch
import torch.nn.functional as F
from basicsr.archs import build_network
from torch import nn

from losses_plugin.archs.backbone_features import BackboneWithFeatures


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


@pytest.mark.parametrize('mode', ['bicubic', 'bilinear'])
def test_srcnn_pre_upsamples_with_half_pixel_centres(mode):
    """SRCNN's input interpolation is align_corners=False (pixel centres, as MATLAB's imresize)."""
    torch.manual_seed(0)
    net = build_network({'type': 'SRCNN', 'upscale': 3, 'upsampling': mode, 'num_feat': 4, 'num_feat2': 4}).double()
    x = torch.rand(1, 3, 6, 7, dtype=torch.float64)
    up = F.interpolate(x, scale_factor=3, mode=mode, align_corners=False)
    expected = net.conv3(net.act2(net.conv2(net.act1(net.conv1(up)))))
    with torch.no_grad():
        assert torch.allclose(net(x), expected, rtol=0, atol=1e-12)


@pytest.mark.parametrize('upscale', [1, 2, 3])
def test_vdsr_is_the_bicubic_image_plus_a_residual_of_relu_convolutions(upscale):
    """VDSR: out = up + conv_last(relu(conv(... relu(conv_first(up))))), a ReLU after every convolution but the
    last, up the bicubic image (align_corners=False; the input itself at upscale 1)."""
    torch.manual_seed(0)
    net = build_network({'type': 'VDSR', 'num_feat': 4, 'num_conv': 4, 'upscale': upscale}).double()
    torch.nn.init.normal_(net.conv_last.weight)  # a residual far from zero, so its sign shows
    x = torch.rand(1, 3, 5, 6, dtype=torch.float64)
    up = F.interpolate(x, scale_factor=upscale, mode='bicubic', align_corners=False) if upscale > 1 else x
    convs = [net.conv_first] + [m for m in net.body if isinstance(m, nn.Conv2d)]
    assert len(convs) == 3
    y = up
    for conv in convs:
        y = F.relu(conv(y))
    with torch.no_grad():
        out = net(x)
        assert out.shape[-2:] == (5 * upscale, 6 * upscale)
        assert torch.allclose(out, up + net.conv_last(y), rtol=0, atol=1e-12)


def test_dncnn_has_no_bias_before_batchnorm_and_can_predict_the_image_itself():
    """The middle convolutions feed BatchNorm, whose shift makes a bias redundant (the paper's layers); with
    residual: false the body's output is the image, not input minus it."""
    net = build_network({'type': 'DnCNN', 'num_conv': 4, 'num_feat': 4, 'residual': False}).eval()
    convs = [m for m in net.body if isinstance(m, nn.Conv2d)]
    assert [c.bias is not None for c in convs] == [True, False, False, True]
    x = torch.rand(1, 3, 8, 8)
    with torch.no_grad():
        assert torch.equal(net(x), net.body(x))


@pytest.mark.parametrize('upscale, levels', [(2, 1), (3, 1), (4, 2), (8, 3)])
def test_lapsrn_adds_each_levels_residual_to_the_upsampled_image(upscale, levels):
    """LapSRN's image branch: at every level, the upsampled image plus the residual the feature branch
    predicts (a sign flip would subtract it); one residual convolution per level, the last being conv_last."""
    torch.manual_seed(0)
    net = build_network({'type': 'LapSRN', 'num_feat': 4, 'depth': 1, 'upscale': upscale}).double()
    assert len(net.levels) == len(net.image_upsamplers) == levels and len(net.residuals) == levels - 1
    for conv in list(net.residuals) + [net.conv_last]:
        torch.nn.init.normal_(conv.weight)
    x = torch.rand(1, 3, 6, 6, dtype=torch.float64)
    features, image = net.conv_first(x), x
    for level, image_up, residual in zip(net.levels, net.image_upsamplers, list(net.residuals) + [net.conv_last]):
        features = level(features)
        image = image_up(image) + residual(features)
    with torch.no_grad():
        assert torch.allclose(net(x), image, rtol=0, atol=1e-12)


def test_lapsrn_feature_branch_is_convolutions_and_transposed_convolutions_each_followed_by_leaky_relu_0_2():
    """LapSRN's feature branch applied by hand: conv_first, then per level ``depth`` 3x3 convolutions and the
    transposed-convolution upsampler, each followed by LeakyReLU(0.2); compared with the input of conv_last,
    read by the hook FGDNet uses."""
    torch.manual_seed(0)
    wrapped = BackboneWithFeatures({'type': 'LapSRN', 'num_feat': 4, 'depth': 2, 'upscale': 4}).double()
    net = wrapped.backbone
    x = torch.randn(1, 3, 5, 5, dtype=torch.float64)
    features = F.leaky_relu(net.conv_first[0](x), 0.2)
    for level in net.levels:
        layers = [m for m in level if not isinstance(m, nn.LeakyReLU)]
        assert len(layers) == 3 and isinstance(layers[-1], nn.ConvTranspose2d)
        for layer in layers:
            features = F.leaky_relu(layer(features), 0.2)
    with torch.no_grad():
        assert torch.allclose(features, wrapped(x)[1], rtol=0, atol=1e-12)
