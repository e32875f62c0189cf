"""The feature-hook wrapper around registered backbones, and UDL's UncertaintySRNet and VDSR on it."""
import pytest
import torch
from basicsr.archs import build_network

from losses_plugin.archs.backbone_features import BackboneWithFeatures

BACKBONES = {
    'EDSR': {'type': 'EDSR', 'num_in_ch': 3, 'num_out_ch': 3, 'num_feat': 8, 'num_block': 1, 'upscale': 4},
    'RCAN': {'type': 'RCAN', 'num_in_ch': 3, 'num_out_ch': 3, 'num_feat': 8, 'num_group': 1, 'num_block': 1,
             'squeeze_factor': 4, 'upscale': 4},
    'MSRResNet': {'type': 'MSRResNet', 'num_in_ch': 3, 'num_out_ch': 3, 'num_feat': 8, 'num_block': 1, 'upscale': 4},
    'RRDBNet': {'type': 'RRDBNet', 'num_in_ch': 3, 'num_out_ch': 3, 'num_feat': 8, 'num_block': 1, 'num_grow_ch': 4},
    'VDSR': {'type': 'VDSR', 'num_feat': 8, 'num_conv': 4, 'upscale': 4},
}


@pytest.mark.parametrize('name', BACKBONES)
def test_wrapper_returns_the_backbone_output_and_the_features_entering_conv_last(name):
    torch.manual_seed(0)
    wrapper = BackboneWithFeatures(BACKBONES[name])
    x = torch.rand(1, 3, 12, 12)
    seen = []  # an independent look at conv_last's input
    wrapper.backbone.conv_last.register_forward_hook(lambda module, args, output: seen.append(args[0]))
    out, features = wrapper(x)
    assert features is seen[0] and wrapper._features is None  # nothing kept between calls
    assert torch.equal(out, wrapper.backbone(x))
    assert features.shape[1] == wrapper.feature_channels == 8
    assert out.shape[-2:] == (48, 48) and features.shape[-2:] == (48, 48)


def test_unknown_feature_module_lists_the_last_convolutions():
    with pytest.raises(ValueError, match=r"EDSR has no module 'tail' \(option feature_module\).*conv_last"):
        BackboneWithFeatures(BACKBONES['EDSR'], 'tail')


@pytest.mark.parametrize('name', ['EDSR', 'RCAN', 'MSRResNet'])
def test_uncertainty_net_adds_a_head_and_keeps_the_plain_forward(name):
    torch.manual_seed(0)
    net = build_network({'type': 'UncertaintySRNet', 'backbone': BACKBONES[name], 'num_feat': 8})
    x = torch.rand(2, 3, 10, 10)
    sr, s = net(x, return_uncertainty=True)
    assert torch.equal(net(x), sr) and s.shape == sr.shape == (2, 3, 40, 40)
    (sr.sum() + s.sum()).backward()
    assert all(p.grad is not None for p in net.head.parameters())
    assert sorted({k.split('.')[0] for k in net.state_dict()}) == ['head', 'net']


def test_vdsr_starts_near_bicubic_and_checks_its_options():
    torch.manual_seed(0)
    net = build_network({'type': 'VDSR', 'upscale': 3})
    x = torch.rand(1, 3, 10, 10)
    up = torch.nn.functional.interpolate(x, scale_factor=3, mode='bicubic', align_corners=False)
    out = net(x)
    assert out.shape == (1, 3, 30, 30) and (out - up).abs().mean() < 0.2
    assert sum(isinstance(m, torch.nn.Conv2d) for m in net.modules()) == 20
    with pytest.raises(ValueError, match='num_in_ch'):
        build_network({'type': 'VDSR', 'num_in_ch': 1, 'num_out_ch': 3})
