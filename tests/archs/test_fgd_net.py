"""FGDNet, ClassModule and LapSRN: bins and anchors (eq. 1-2), the anchor areas, the wrapper."""
import pytest
import torch
from basicsr.archs import build_network

from losses_plugin.archs.fgd_arch import bin_anchors, bin_thresholds, confine, gt_bins

EDSR = {'type': 'EDSR', 'num_in_ch': 3, 'num_out_ch': 3, 'num_feat': 8, 'num_block': 1, 'upscale': 4}
BACKBONES = {
    'EDSR': EDSR,
    'RCAN': {'type': 'RCAN', 'num_in_ch': 3, 'num_out_ch': 3, 'num_feat': 8, 'num_group': 1, 'num_block': 1,
             'squeeze_factor': 4, 'upscale': 4},
    'MSRResNet': {'type': 'MSRResNet', 'num_in_ch': 3, 'num_out_ch': 3, 'num_feat': 8, 'num_block': 1, 'upscale': 4},
    'LapSRN': {'type': 'LapSRN', 'num_feat': 8, 'depth': 2, 'upscale': 4},
}


def test_thresholds_anchors_and_gt_bins_by_hand():
    assert torch.equal(bin_thresholds(4), torch.tensor([0, 0.25, 0.5, 0.75, 1], dtype=torch.float64))
    assert torch.equal(bin_anchors(4), torch.tensor([0.125, 0.375, 0.625, 0.875], dtype=torch.float64))
    assert gt_bins(torch.tensor([0.0, 0.24, 0.25, 0.5, 0.99, 1.0]), 4).tolist() == [0, 0, 1, 2, 3, 3]
    assert bin_anchors(32)[0].item() == pytest.approx(1 / 64) and len(bin_anchors(32)) == 32


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
    assert torch.equal(results['bins'], gt_bins(results['sr'].detach().clamp(0, 1), 32))
    # then the output stays within a bin of sr: sr lies inside every area around its own bin
    assert ((results['inference'] - results['sr'].clamp(0, 1)).abs() <= 1.5 / 32).all()
    without = build_network({'type': 'FGDNet', 'backbone': EDSR, 'bin_prior': 0})
    assert not hasattr(without, 'anchors') and without.bin_prior == 0
