"""FGDNet, ClassModule and LapSRN, and the bin maths they share (losses_plugin.fgd_bins): bins and anchors
(eq. 1-2), the anchor areas, the wrapper."""
import pytest
import torch
import torch.nn.functional as F
from basicsr.archs import build_network

from losses_plugin import fgd_bins
from losses_plugin.fgd_bins import (anchor_of, anchor_target, area_half_width, bin_anchors, bin_index, bin_position,
                                     bin_thresholds, confine)

EDSR = {'type': 'EDSR', 'num_in_ch': 3, 'num_out_ch': 3, 'num_feat': 8, 'num_block': 1, 'upscale': 4}
BACKBONES = {
    'EDSR': EDSR,
    'RCAN': {'type': 'RCAN', 'num_in_ch': 3, 'num_out_ch': 3, 'num_feat': 8, 'num_group': 1, 'num_block': 1,
             'squeeze_factor': 4, 'upscale': 4},
    'MSRResNet': {'type': 'MSRResNet', 'num_in_ch': 3, 'num_out_ch': 3, 'num_feat': 8, 'num_block': 1, 'upscale': 4},
    'LapSRN': {'type': 'LapSRN', 'num_feat': 8, 'depth': 2, 'upscale': 4},
}


def test_thresholds_anchors_and_bin_index_by_hand():
    assert torch.equal(bin_thresholds(4), torch.tensor([0, 0.25, 0.5, 0.75, 1], dtype=torch.float64))
    assert torch.equal(bin_anchors(4), torch.tensor([0.125, 0.375, 0.625, 0.875], dtype=torch.float64))
    assert bin_index(torch.tensor([0.0, 0.24, 0.25, 0.5, 0.99, 1.0]), 4).tolist() == [0, 0, 1, 2, 3, 3]
    assert bin_index(torch.tensor([-0.3, 1.7]), 4).tolist() == [0, 3]  # outside [0, 1]: the end bins
    assert bin_anchors(32)[0].item() == pytest.approx(1 / 64) and len(bin_anchors(32)) == 32


def test_anchor_of_a_bin_is_eq_2s_anchor_and_the_anchor_target_is_the_gt_anchor():
    assert torch.equal(anchor_of(torch.arange(32), 32).double(), bin_anchors(32))
    values = torch.tensor([0.0, 0.1, 0.26, 0.74, 1.0])
    assert anchor_target(values, 4).tolist() == [0.125, 0.125, 0.375, 0.625, 0.875]
    assert anchor_target(values.double(), 4).dtype == torch.float64
    # every value lies within half a bin of its gt anchor
    dense = torch.rand(1000)
    assert ((anchor_target(dense, 32) - dense).abs() <= 0.5 / 32 + 1e-7).all()


def test_bin_position_counts_anchors():
    assert bin_position(anchor_of(torch.arange(4), 4), 4).tolist() == [0.0, 1.0, 2.0, 3.0]
    assert bin_position(torch.tensor([0.0, 1.0]), 4).tolist() == [-0.5, 3.5]  # the range's ends: half a bin out


def test_area_half_width_is_a_over_2k():
    assert area_half_width(5, 32) == 5 / 64 and area_half_width(1, 4) == 0.125
    assert torch.equal(area_half_width(torch.tensor([3.0, 7.0]), 32), torch.tensor([3 / 64, 7 / 64]))


def test_the_bin_module_is_a_leaf_that_imports_only_torch():
    import ast
    tree = ast.parse(open(fgd_bins.__file__).read())
    imported = {alias.name.split('.')[0] for node in ast.walk(tree) if isinstance(node, ast.Import)
                for alias in node.names}
    imported |= {node.module.split('.')[0] for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)}
    assert imported == {'torch'}


def test_the_arch_the_loss_and_the_model_use_the_one_bin_module():
    from losses_plugin.archs import fgd_arch
    from losses_plugin.losses import fgd_loss
    from losses_plugin.models import fgd_model
    assert fgd_arch.confine is fgd_bins.confine and fgd_arch.anchor_of is fgd_bins.anchor_of
    assert fgd_loss.bin_index is fgd_bins.bin_index and fgd_model.anchor_of is fgd_bins.anchor_of


def test_confine_stays_inside_the_area_and_follows_sr_near_the_anchor():
    sr = torch.linspace(-1, 2, 301)
    anchor = torch.full_like(sr, 0.5)
    out = confine(sr, anchor, 5, 32)  # h = 5/64
    assert (out - 0.5).abs().max() <= 5 / 64 + 1e-7 and confine(anchor, anchor, 5, 32).equal(anchor)
    near = torch.tensor([0.5 + 1e-3])
    assert confine(near, torch.tensor([0.5]), 5, 32).item() == pytest.approx(near.item(), abs=1e-6)


@pytest.mark.parametrize('name', BACKBONES)
def test_fgdnet_wraps_backbones_and_its_output_stays_inside_the_chosen_area(name):
    torch.manual_seed(0)
    net = build_network({'type': 'FGDNet', 'backbone': BACKBONES[name]}).eval()
    x = torch.rand(2, 3, 12, 12)
    with torch.no_grad():
        results = net(x, return_all=True)
        out = net(x)
    assert out.shape == (2, 3, 48, 48) and torch.equal(out, results['inference'])
    anchors = bin_anchors(32).float()[results['bins']]
    half_area = torch.tensor([3, 5, 7]).float()[results['areas']][:, None] / 64
    assert ((out - anchors).abs() <= half_area + 1e-6).all()
    assert torch.equal(results['bins'], results['logits'].argmax(dim=1))


def test_training_output_mixes_the_areas_by_the_class_probabilities():
    torch.manual_seed(0)
    net = build_network({'type': 'FGDNet', 'backbone': EDSR})
    x = torch.rand(1, 3, 8, 8)
    results = net(x, return_all=True)
    anchor = bin_anchors(32).float()[results['bins']]
    p = results['probs'][0, :, 0, 0]  # 8x8 LR: one region
    expected = sum(p[i] * confine(results['sr'], anchor, a, 32) for i, a in enumerate((3, 5, 7)))
    assert torch.allclose(results['out'], expected, atol=1e-6)


def test_gradient_reaches_backbone_bin_head_and_class_module():
    from losses_plugin.losses.fgd_loss import FineGrainedDynamicLoss

    torch.manual_seed(0)
    net = build_network({'type': 'FGDNet', 'backbone': EDSR})
    results = net(torch.rand(2, 3, 8, 8), return_all=True)
    FineGrainedDynamicLoss()(results['out'], torch.rand(2, 3, 32, 32), results['logits'], results['probs']).backward()
    for part in (net.net.backbone, net.bin_head, net.class_module):
        grads = [p.grad for p in part.parameters()]
        assert all(g is not None for g in grads) and sum(g.abs().sum() for g in grads) > 0, type(part).__name__


def test_static_area_has_no_class_module():
    net = build_network({'type': 'FGDNet', 'backbone': EDSR, 'area_sizes': [5]})
    assert net.class_module is None and not any('class_module' in k for k in net.state_dict())
    results = net.eval()(torch.rand(1, 3, 8, 8), return_all=True)
    assert results['probs'] is None and torch.equal(results['out'], results['inference'])


def test_parameters_added_to_lapsrn_are_near_the_papers():
    lapsrn = build_network({'type': 'LapSRN', 'upscale': 4})
    fgd = build_network({'type': 'FGDNet', 'backbone': {'type': 'LapSRN', 'upscale': 4}})
    count = lambda n: sum(p.numel() for p in n.parameters())  # noqa: E731
    assert 800_000 < count(lapsrn) < 900_000  # the paper: 862K
    assert 50_000 < count(fgd) - count(lapsrn) < 90_000  # the paper: +72K


def test_class_module_scores_each_32x32_lr_region_of_any_size():
    module = build_network({'type': 'ClassModule'})
    probs = module(torch.rand(1, 3, 64, 100))
    assert probs.shape == (1, 3, 2, 4) and torch.allclose(probs.sum(dim=1), torch.ones(1, 2, 4))
    assert module(torch.rand(2, 3, 16, 16)).shape == (2, 3, 1, 1)  # small patches: one decision


@pytest.mark.parametrize('scale', [2, 3, 4])
def test_lapsrn_scales_and_starts_from_bilinear_images(scale):
    torch.manual_seed(0)
    net = build_network({'type': 'LapSRN', 'upscale': scale, 'num_feat': 8, 'depth': 2})
    assert net(torch.rand(1, 3, 10, 7)).shape == (1, 3, 10 * scale, 7 * scale)
    x = torch.rand(1, 3, 8, 8)
    up = net.image_upsamplers[0](x)
    bilinear = torch.nn.functional.interpolate(x, scale_factor=net.image_upsamplers[0].stride[0], mode='bilinear')
    assert (up - bilinear)[..., 3:-3, 3:-3].abs().max() < 1e-5


@pytest.mark.parametrize('options, match', [({'area_sizes': [4]}, 'area_sizes'), ({'num_bins': 1}, 'num_bins'),
                                            ({'feature_module': 'nope'}, "no module 'nope'")])
def test_invalid_fgdnet_options_are_clear_errors(options, match):
    with pytest.raises(ValueError, match=match):
        build_network({'type': 'FGDNet', 'backbone': EDSR, **options})


def test_bin_prior_starts_the_bins_at_the_regressions_own_bin():
    torch.manual_seed(0)
    net = build_network({'type': 'FGDNet', 'backbone': EDSR, 'bin_prior': 4.0})
    torch.nn.init.zeros_(net.bin_head.weight)
    torch.nn.init.zeros_(net.bin_head.bias)
    results = net.eval()(torch.rand(2, 3, 8, 8), return_all=True)
    assert torch.equal(results['bins'], bin_index(results['sr'].detach().clamp(0, 1), 32))
    # then the output stays within a bin of sr: sr lies inside every area around its own bin
    assert ((results['inference'] - results['sr'].clamp(0, 1)).abs() <= 1.5 / 32).all()
    without = build_network({'type': 'FGDNet', 'backbone': EDSR, 'bin_prior': 0})
    assert not hasattr(without, 'anchors') and without.bin_prior == 0


@pytest.mark.parametrize('detach', [False, True])
def test_detach_bin_head_keeps_the_bin_cross_entropy_out_of_the_backbone(detach):
    from losses_plugin.losses.fgd_loss import FineGrainedDynamicLoss

    torch.manual_seed(0)
    net = build_network({'type': 'FGDNet', 'backbone': EDSR, 'detach_bin_head': detach})
    results = net(torch.rand(2, 3, 8, 8), return_all=True)
    l_c1 = FineGrainedDynamicLoss().terms(results['out'], torch.rand(2, 3, 32, 32), results['logits'])['l_c1']
    l_c1.backward()
    backbone = sum(p.grad.abs().sum() for p in net.net.backbone.parameters() if p.grad is not None)
    head = sum(p.grad.abs().sum() for p in net.bin_head.parameters())
    assert head > 0  # the head always learns to classify
    assert (backbone == 0) if detach else (backbone > 0)  # the paper's reading: the backbone learns it too
    with torch.no_grad():  # the forward pass is the same either way
        plain = build_network({'type': 'FGDNet', 'backbone': EDSR, 'detach_bin_head': not detach})
        plain.load_state_dict(net.state_dict())
        x = torch.rand(1, 3, 8, 8)
        assert torch.equal(plain.eval()(x), net.eval()(x))


def test_detach_bin_head_must_be_a_bool():
    with pytest.raises(ValueError, match="option 'detach_bin_head' must be one of True, False, got 'yes'"):
        build_network({'type': 'FGDNet', 'backbone': EDSR, 'detach_bin_head': 'yes'})


@pytest.mark.parametrize('head_kernel', [1, 3])
def test_bin_logits_are_the_bin_heads_convolution_with_its_gradients(head_kernel):
    """A 1x1 head runs as a batched matrix product: the same logits and gradients as the Conv2d it holds."""
    torch.manual_seed(0)
    net = build_network({'type': 'FGDNet', 'backbone': EDSR, 'num_bins': 8, 'head_kernel': head_kernel})
    features = torch.randn(2, 8, 6, 5, requires_grad=True)
    grad = torch.randn(2, 24, 6, 5)
    net.bin_logits(features).backward(grad)
    got = features.grad.clone(), net.bin_head.weight.grad.clone(), net.bin_head.bias.grad.clone()
    features.grad = None
    net.zero_grad()
    expected = net.bin_head(features)
    expected.backward(grad)
    assert torch.allclose(net.bin_logits(features), expected, atol=1e-6)
    for mine, conv in zip(got, (features.grad, net.bin_head.weight.grad, net.bin_head.bias.grad)):
        assert torch.allclose(mine, conv, atol=1e-5)


def test_bin_logits_of_low_resolution_features_are_nearest_upsampled_to_the_output():
    """A bin head on LR features (EDSR's conv_after_body, 1/4 of the output size): each LR logit covers its
    4x4 block of output pixels (without the bin prior, which varies per output pixel)."""
    torch.manual_seed(0)
    net = build_network({'type': 'FGDNet', 'backbone': EDSR, 'feature_module': 'conv_after_body', 'num_bins': 8,
                         'bin_prior': 0, 'area_sizes': [5]})
    out = net(torch.rand(1, 3, 5, 6), return_all=True)
    logits = out['logits']
    assert logits.shape == (1, 8, 3, 20, 24) and out['sr'].shape == (1, 3, 20, 24)
    blocks = logits[..., ::4, ::4]
    assert torch.equal(logits, blocks.repeat_interleave(4, dim=-2).repeat_interleave(4, dim=-1))
    assert not torch.equal(blocks[..., :1, :1].expand_as(blocks), blocks)


def test_class_module_is_the_documented_stack_of_convolutions_and_leaky_relus():
    """ClassModule's forward against its layers applied by hand: conv 4x4 stride 4, LeakyReLU(0.1) after each of
    the first four convolutions (none after the fifth), average pooling over ``pool``, the 1x1 fc, softmax."""
    torch.manual_seed(0)
    module = build_network({'type': 'ClassModule', 'num_feat': 6, 'pool': 2, 'num_classes': 4}).double()
    x = torch.randn(2, 3, 16, 24, dtype=torch.float64)
    convs = [m for m in module.features if isinstance(m, torch.nn.Conv2d)]
    assert len(convs) == 5 and convs[0].kernel_size == (4, 4) and convs[0].stride == (4, 4)
    y = x
    for i, conv in enumerate(convs):
        y = F.conv2d(y, conv.weight, conv.bias, stride=conv.stride)
        y = F.leaky_relu(y, 0.1) if i < 4 else y
    expected = torch.softmax(F.conv2d(F.avg_pool2d(y, 2, ceil_mode=True), module.fc.weight, module.fc.bias), dim=1)
    with torch.no_grad():
        assert torch.allclose(module(x), expected, rtol=0, atol=1e-12)


@pytest.mark.parametrize('lr_size, pool, regions', [((32, 64), 8, (1, 2)), ((28, 64), 8, (1, 1)),
                                                    ((160, 320), 40, (1, 2)), ((156, 320), 40, (1, 1))])
def test_class_module_pools_by_windows_from_a_side_of_pool_and_over_the_whole_map_below(lr_size, pool, regions):
    """A stride-4 map whose short side is exactly ``pool`` is cut into pool x pool windows (ceil mode); one a
    pixel shorter is averaged whole. ``pool`` 40 exceeds the 32 channels of the last convolution."""
    module = build_network({'type': 'ClassModule', 'num_feat': 2, 'pool': pool})
    with torch.no_grad():
        assert module(torch.rand(1, 3, *lr_size)).shape == (1, 3, *regions)


@pytest.mark.parametrize('area_sizes', [[1, 3], [3, 5, 7, 9]])
def test_fgdnet_builds_a_class_module_of_one_class_per_area_size(area_sizes):
    torch.manual_seed(0)
    net = build_network({'type': 'FGDNet', 'backbone': EDSR, 'num_bins': 16, 'area_sizes': area_sizes,
                         'class_module': {'num_feat': 5, 'pool': 1}})
    assert net.class_module.fc.out_channels == len(area_sizes)
    assert net.class_module.features[0].out_channels == 5 and net.class_module.pool == 1  # its options reach it
    results = net(torch.rand(1, 3, 8, 8), return_all=True)
    assert results['probs'].shape == (1, len(area_sizes), 2, 2) and results['inference'] is None  # training mode


@pytest.mark.parametrize('head_kernel', [3, 5])
def test_a_wider_bin_head_keeps_the_feature_size(head_kernel):
    """A k x k head is padded by k // 2: its logits are the convolution of the full feature map, not a smaller
    map upsampled back."""
    torch.manual_seed(0)
    net = build_network({'type': 'FGDNet', 'backbone': EDSR, 'num_bins': 4, 'head_kernel': head_kernel,
                         'bin_prior': 0, 'area_sizes': [3]})
    x = torch.rand(1, 3, 5, 6)
    with torch.no_grad():
        _, features = net.net(x)
        expected = F.conv2d(features, net.bin_head.weight, net.bin_head.bias, padding=head_kernel // 2)
        logits = net(x, return_all=True)['logits']
    assert features.shape[-2:] == (20, 24)  # EDSR's conv_last reads HR features
    assert torch.allclose(logits, expected.unflatten(1, (4, 3)), atol=1e-6)


def test_fgdnet_on_one_channel_images_with_a_static_area():
    torch.manual_seed(0)
    net = build_network({'type': 'FGDNet', 'backbone': dict(BACKBONES['MSRResNet'], num_in_ch=1, num_out_ch=1),
                         'num_out_ch': 1, 'num_bins': 8, 'area_sizes': [3]}).eval()
    with torch.no_grad():
        results = net(torch.rand(2, 1, 4, 5), return_all=True)
    assert results['inference'].shape == (2, 1, 16, 20) and results['areas'].shape == (2, 16, 20)
    assert not results['areas'].any()


def test_fgdnet_confines_float64_outputs_with_float64_anchors():
    """In float64 the anchors (b + 0.5) / K are float64: the output equals the area regression A + h tanh((sr - A)/h)
    computed by hand to 1e-15 (float32 anchors would be off by ~1e-8)."""
    torch.manual_seed(0)
    net = build_network({'type': 'FGDNet', 'backbone': EDSR, 'num_bins': 7, 'area_sizes': [3]}).double().eval()
    with torch.no_grad():
        results = net(torch.rand(1, 3, 4, 4, dtype=torch.float64), return_all=True)
    anchor = (results['bins'].double() + 0.5) / 7
    expected = anchor + 3 / 14 * torch.tanh((results['sr'] - anchor) / (3 / 14))
    assert results['inference'].dtype == torch.float64
    assert torch.allclose(results['inference'], expected, rtol=0, atol=1e-15)


@pytest.mark.parametrize('autocast', [False, True])
def test_bin_prior_starts_at_the_regressions_own_bin_under_bf16_autocast_too(autocast):
    """The prior -bin_prior * (k - p)^2 is computed in float32 even when the head's logits are bf16: in bf16,
    k^2 rounds for odd k >= 17 (17^2 = 289 -> 288), which moved half the pixels' prior maximum to an odd
    neighbour bin."""
    torch.manual_seed(0)
    net = build_network({'type': 'FGDNet', 'backbone': EDSR, 'bin_prior': 4.0, 'area_sizes': [3]}).eval()
    torch.nn.init.zeros_(net.bin_head.weight)
    torch.nn.init.zeros_(net.bin_head.bias)
    x = torch.rand(2, 3, 16, 16)
    backbone = net.net.backbone
    with torch.no_grad():  # shift the backbone's output to about 0.75 (bins 22-26), where bf16 rounds k^2
        sr_mean = backbone(x).mean(dim=(0, 2, 3))
        backbone.conv_last.bias.add_((0.75 - sr_mean) * backbone.img_range)
    with torch.no_grad(), torch.autocast('cpu', dtype=torch.bfloat16, enabled=autocast):
        results = net(x, return_all=True)
    assert (results['bins'] >= 17).all() and len(results['bins'].unique()) >= 3
    # the regression's own bin, but where sr lies within float32 rounding of a bin edge (4 of 24576 pixels)
    differ = results['bins'] != bin_index(results['sr'].float().clamp(0, 1), 32)
    position = bin_position(results['sr'].float(), 32)[differ]
    assert differ.sum() <= 10 and ((position - position.floor() - 0.5).abs() < 1e-4).all()
