"""The feature-hook wrapper around registered backbones, and UDL's UncertaintySRNet and VDSR on it."""
import copy
import pickle

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
    assert features is seen[0] and wrapper.backbone.conv_last.kept_input is None  # nothing kept between calls
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


HAT = {'type': 'HAT', 'embed_dim': 12, 'depths': [1, 1], 'num_heads': [2, 2], 'window_size': 4, 'num_feat': 8,
       'squeeze_factor': 4, 'upscale': 4}


@pytest.mark.parametrize('feature_module, scale', [('conv_last', 4), ('conv_before_upsample.0', 1)])
def test_features_of_a_padding_backbone_are_cut_to_the_image(feature_module, scale):
    """HAT pads 10x13 to 12x16 (bottom, right); the features of the image are the top-left of what conv_last
    (after the upsampler, x4) or conv_before_upsample (before it) sees."""
    torch.manual_seed(0)
    wrapper = BackboneWithFeatures(HAT, feature_module)
    seen = []
    wrapper.backbone.get_submodule(feature_module).register_forward_hook(lambda m, args, out: seen.append(args[0]))
    out, features = wrapper(torch.rand(1, 3, 10, 13))
    assert out.shape[-2:] == (40, 52) and seen[0].shape[-2:] == (12 * scale, 16 * scale)
    assert torch.equal(features, seen[0][..., :10 * scale, :13 * scale])


@pytest.mark.parametrize('feature_module, in_channels, channels',
                         [('conv_last', 8, 3), ('conv_before_upsample.0', 12, 3), ('upsample.0', 8, 1)])  # Table II's
def test_uncertainty_net_on_hat_gives_one_log_variance_per_output_pixel(feature_module, in_channels, channels):
    torch.manual_seed(0)
    net = build_network({'type': 'UncertaintySRNet', 'backbone': HAT, 'feature_module': feature_module,
                         'num_out_ch': channels, 'num_feat': 8}).eval()  # no stochastic depth between the calls
    x = torch.rand(2, 3, 10, 13)
    sr, s = net(x, return_uncertainty=True)
    assert torch.equal(net(x), sr) and sr.shape == (2, 3, 40, 52) and s.shape == (2, channels, 40, 52)
    assert net.head[0].in_channels == in_channels  # HAT's num_feat after the body, embed_dim inside it
    if feature_module != 'conv_last':  # LR features: each LR pixel's s covers its 4x4 HR block
        assert torch.equal(s, s[..., ::4, ::4].repeat_interleave(4, -2).repeat_interleave(4, -1))


def test_esu_loss_trains_the_sr_network_and_the_uncertainty_head_on_hat():
    """Eq. (2) on HAT: its gradient reaches the HAT body (through sr and through the head's features) and the head."""
    from losses_plugin.losses.udl_loss import UDLLoss

    torch.manual_seed(0)
    net = build_network({'type': 'UncertaintySRNet', 'backbone': HAT, 'num_feat': 8})
    x, hr = torch.rand(2, 3, 10, 13), torch.rand(2, 3, 40, 52)
    sr, s = net(x, return_uncertainty=True)
    UDLLoss(stage='esu')(sr, hr, s).backward()
    hat = net.net.backbone
    for name, module in (('head', net.head[0]), ('head', net.head[-1]), ('HAT body', hat.layers[0]),
                         ('HAT conv_first', hat.conv_first), ('HAT conv_last', hat.conv_last)):
        grads = [p.grad for p in module.parameters()]
        assert all(g is not None and g.abs().sum() > 0 for g in grads), name
    # the uncertainty branch alone: s trains the head and, through the features it reads, the shared HAT body
    net.zero_grad(set_to_none=True)
    sr, s = net(x, return_uncertainty=True)
    UDLLoss(stage='esu')(sr.detach(), hr, s).backward()
    body = hat.layers[0].residual_group.blocks[0].mlp.fc1
    assert net.head[0].weight.grad.abs().sum() > 0 and body.weight.grad.abs().sum() > 0
    assert hat.conv_last.weight.grad is None  # the head reads conv_last's input, not its output


def test_uncertainty_head_in_channels_last_layout_gives_the_same_s_and_gradients():
    torch.manual_seed(0)
    backbone = {'type': 'EDSR', 'num_in_ch': 3, 'num_out_ch': 3, 'num_feat': 8, 'num_block': 1, 'upscale': 2}
    fast = build_network({'type': 'UncertaintySRNet', 'backbone': backbone, 'num_feat': 8})
    plain = build_network({'type': 'UncertaintySRNet', 'backbone': backbone, 'num_feat': 8, 'channels_last': False})
    plain.load_state_dict(fast.state_dict())
    assert fast.head[0].weight.is_contiguous(memory_format=torch.channels_last) and plain.head[0].weight.is_contiguous()
    lq = torch.rand(2, 3, 12, 10)
    (s_fast := fast(lq, return_uncertainty=True)[1]).square().sum().backward()
    (s_plain := plain(lq, return_uncertainty=True)[1]).square().sum().backward()
    assert torch.allclose(s_fast, s_plain, atol=1e-6)
    assert torch.allclose(fast.head[0].weight.grad, plain.head[0].weight.grad, rtol=1e-4, atol=1e-3)  # grads ~1e3
    with pytest.raises(ValueError, match="UncertaintySRNet: option 'channels_last'"):
        build_network({'type': 'UncertaintySRNet', 'backbone': backbone, 'channels_last': 1})


def test_a_deep_copy_and_a_pickled_copy_read_their_own_features():
    """EMA copies and checkpoints of whole networks: each copy's hook keeps the input of the copy's own module."""
    torch.manual_seed(0)
    wrapper = BackboneWithFeatures(BACKBONES['EDSR'])
    copies = [copy.deepcopy(wrapper), pickle.loads(pickle.dumps(wrapper))]
    x = torch.rand(1, 3, 12, 12)
    out, features = wrapper(x)
    for other in copies:
        with torch.no_grad():
            other.backbone.conv_last.weight.add_(1)  # its output differs from the original's, its features not
        other_out, other_features = other(x)
        assert torch.equal(other_features, features) and not torch.allclose(other_out, out)
        assert other.backbone.conv_last.kept_input is None and wrapper.backbone.conv_last.kept_input is None


def test_the_feature_hook_compiles_into_one_graph():
    """``train.compile``: dynamo traces the hook and the read of the kept input without a graph break."""
    torch.manual_seed(0)
    net = build_network({'type': 'UncertaintySRNet', 'backbone': BACKBONES['EDSR'], 'num_feat': 4})
    x = torch.rand(1, 3, 8, 8)
    compiled = torch.compile(net, backend='eager', fullgraph=True)  # fullgraph: a graph break is an error
    for got, expected in zip(compiled(x, return_uncertainty=True), net(x, return_uncertainty=True)):
        torch.testing.assert_close(got, expected)
