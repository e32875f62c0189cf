"""GRUNet, DPHSIR's denoiser: the authors' layout and numbers, the band axis, any image size, gradients,
checkpoints and options."""
import pytest
import torch
from basicsr.archs import build_network
from basicsr.models.base_model import BaseModel
from torch import nn

from losses_plugin.archs.grunet_arch import (BandConv3d, BandConvTranspose3d, GatedRecurrentConv3d, GRUNet,
                                             ResidualRecurrentBlock, quasi_recurrent_pool)
from losses_plugin.checks import OptionError


def authors_keys():
    """The state-dict keys of the authors' released denoiser (grunet_masked_nobn): no BatchNorm, one
    convolution weight per unit, a bias in the last one."""
    keys = ['Conv1.conv.conv.weight'] + [f'Down{i}.conv.conv.weight' for i in range(1, 5)]
    for i in range(2, 6):
        keys += [f'Conv{i}.{unit}.conv.conv.weight' for unit in ('conv1', 'conv2', 'conv_residual')]
        keys += [f'Up{i}.conv.upsample_conv.conv3d.weight']
        keys += [f'Up_conv{i}.{unit}.conv.deconv.weight' for unit in ('conv1', 'conv2', 'conv_residual')]
    return keys + ['Conv.conv.deconv.weight', 'Conv.conv.deconv.bias']


def test_defaults_are_the_released_dphsir_denoiser():
    net = build_network({'type': 'GRUNet'})
    params = net.state_dict()
    assert sorted(params) == sorted(authors_keys())
    assert not any(isinstance(m, nn.BatchNorm3d) for m in net.modules())
    # widths 16-32-64-128-256; gates: 3x (bidirectional) or 2x the unit's width; noisy bands + noise map in
    assert params['Conv1.conv.conv.weight'].shape == (48, 2, 3, 3, 3)
    assert params['Down1.conv.conv.weight'].shape == (32, 16, 3, 3, 3)
    assert params['Conv5.conv2.conv.conv.weight'].shape == (512, 256, 3, 3, 3)
    assert params['Conv2.conv_residual.conv.conv.weight'].shape == (64, 16, 1, 1, 1)
    assert params['Up5.conv.upsample_conv.conv3d.weight'].shape == (256, 256, 3, 3, 3)
    assert params['Up_conv2.conv2.conv.deconv.weight'].shape == (16, 32, 3, 3, 3)
    assert params['Conv.conv.deconv.weight'].shape == (16, 3, 3, 3, 3)
    assert sum(p.numel() for p in net.parameters()) == 14278451
    downs = [m for name, m in net.named_modules() if name.startswith('Down') and isinstance(m, nn.Conv3d)]
    assert [m.stride for m in downs] == [(1, 2, 2)] * 4  # spatial down-sampling only, the bands stay
    assert net.noise_level == 25
    # QRNN3D's initialisation: He normal with fan_out, std sqrt(2 / (out_channels * 27)); biases 0
    assert params['Conv5.conv2.conv.conv.weight'].std().item() == pytest.approx((2 / (512 * 27)) ** 0.5, rel=0.02)
    assert params['Conv.conv.deconv.bias'].abs().max() > 0  # a transposed convolution: PyTorch's default
    with_bn = GRUNet(bn=True)
    assert sum(isinstance(m, nn.BatchNorm3d) for m in with_bn.modules()) == 34  # one per unit
    assert 'Conv1.conv.bn.running_mean' in with_bn.state_dict()  # the authors' name: their BN checkpoints load


def deterministic_weights(net):
    with torch.no_grad():
        for i, (_, p) in enumerate(sorted(net.state_dict().items())):
            fan = p[0].numel() if p.dim() > 1 else 1
            p.copy_(torch.sin(torch.arange(p.numel(), dtype=p.dtype) * 0.7 + i).reshape(p.shape) / fan ** 0.5)
    return net


def test_matches_the_authors_code_on_fixed_weights():
    # Reference values: the authors' grunet_masked_nobn (DPHSIR, dphsir/denoisers/models/qrnn) given the same
    # weights and the cube stack([x, 25/255]) along dim 1.
    net = deterministic_weights(GRUNet().double())
    x = 0.5 + 0.4 * torch.sin(torch.arange(2 * 3 * 16 * 16, dtype=torch.float64).reshape(2, 3, 16, 16) * 0.31)
    with torch.no_grad():
        out = net(x)
    assert (out - x).abs().mean().item() == pytest.approx(0.03186761428971125, abs=1e-12)
    expected = torch.tensor([[0.890041385842394, 0.3182327684878876, 0.3715832099544629],
                             [0.49028145102425175, 0.8410482861836899, 0.12837432851941716]], dtype=torch.float64)
    assert torch.allclose(torch.stack([out[0, :, 5, 7], out[1, :, 12, 3]]), expected, atol=1e-12)


def test_f_pooling_by_hand():
    z = torch.tensor([1., 2., 3.]).reshape(1, 1, 3, 1, 1)
    f = torch.tensor([0.25, 0.5, 0.75]).reshape(1, 1, 3, 1, 1)
    # h0 = 0.75*1 = 0.75, h1 = 0.5*0.75 + 0.5*2 = 1.375, h2 = 0.75*1.375 + 0.25*3 = 1.78125
    assert quasi_recurrent_pool(z, f).flatten().tolist() == [0.75, 1.375, 1.78125]
    # backwards: h2 = 0.25*3 = 0.75, h1 = 0.5*0.75 + 0.5*2 = 1.375, h0 = 0.25*1.375 + 0.75*1 = 1.09375
    assert quasi_recurrent_pool(z, f, reverse=True).flatten().tolist() == [1.09375, 1.375, 0.75]


@pytest.mark.parametrize('kernel, stride, padding', [(3, 1, 1), (3, (1, 2, 2), 1), (1, 1, 0),
                                                     # every axis its own size: band, height, width not mixed up
                                                     ((3, 1, 5), (1, 2, 1), (1, 0, 2)),
                                                     ((1, 3, 5), 1, (0, 1, 2))])
def test_band_convolutions_equal_torch_3d_convolutions(kernel, stride, padding):
    torch.manual_seed(0)
    x = torch.rand(2, 3, 4, 9, 8, dtype=torch.float64)
    conv = BandConv3d(3, 5, kernel, stride, padding, bias=True).double()
    assert torch.allclose(conv(x), nn.functional.conv3d(x, conv.weight, conv.bias, stride, padding))
    if stride == 1:
        deconv = BandConvTranspose3d(3, 5, kernel, 1, padding, bias=True).double()
        expected = nn.functional.conv_transpose3d(x, deconv.weight, deconv.bias, 1, padding)
        assert deconv(x).shape == expected.shape and torch.allclose(deconv(x), expected)


def test_units_recur_along_the_band_axis():
    """A 1x1x1 unit mixes nothing spatially or across bands: only its recurrence carries band b's input to
    later bands (forwards) or earlier ones (backwards), and nothing moves between pixels."""
    torch.manual_seed(0)
    x = torch.rand(1, 2, 4, 3, 3)
    changed = x.clone()
    changed[:, :, 1, 0, 0] += 1
    forward_unit = GatedRecurrentConv3d(2, 3, kernel_size=1)
    moved = (forward_unit(changed) - forward_unit(x)).abs().amax(dim=(0, 1))  # (bands, H, W)
    assert moved[1:, 0, 0].min() > 1e-4 and moved[0].max() == 0
    assert moved[:, 1:].max() == 0 and moved[:, :, 1:].max() == 0
    moved = (forward_unit(changed, reverse=True) - forward_unit(x, reverse=True)).abs().amax(dim=(0, 1))
    assert moved[:2, 0, 0].min() > 1e-4 and moved[2:].max() == 0
    both = GatedRecurrentConv3d(2, 3, kernel_size=1, bidirectional=True)
    assert (both(changed) - both(x)).abs().amax(dim=(0, 1))[:, 0, 0].min() > 1e-4


def test_a_residual_block_runs_all_three_units_in_its_direction():
    torch.manual_seed(0)
    block = ResidualRecurrentBlock(2, 3, 'conv', bn=False)
    x = torch.rand(1, 2, 4, 3, 3)
    for reverse in (False, True):
        expected = block.conv2(block.conv1(x, reverse), reverse) + block.conv_residual(x, reverse)
        assert torch.equal(block(x, reverse), expected)
    assert not torch.allclose(block(x, True), block(x, False))


def test_units_are_built_as_asked():
    assert GatedRecurrentConv3d(2, 3, 'conv', bias=True).conv.conv.bias.shape == (6, )
    assert GatedRecurrentConv3d(2, 3, 'deconv', bias=True).conv.deconv.bias.shape == (6, )
    assert GatedRecurrentConv3d(2, 3, 'conv').conv.conv.bias is None
    with pytest.raises(ValueError, match="kind must be 'conv', 'deconv' or 'upsample', got 'up'"):
        GatedRecurrentConv3d(2, 3, 'up')


def tiny(**options):
    torch.manual_seed(0)
    return GRUNet(**dict(dict(num_feat=2, num_down=2), **options)).eval()


def test_image_channels_are_the_bands_of_a_one_channel_cube_with_the_noise_map():
    net = tiny(noise_level=30)
    x = torch.rand(2, 3, 8, 12)
    with torch.no_grad():
        cube = torch.stack([x, torch.full_like(x, 30 / 255)], dim=1)  # (N, 2, bands, H, W)
        assert torch.equal(net(x), net.forward_cube(cube)[:, 0])
        per_image = net(x, noise_level=torch.tensor([10., 50.]))
        assert torch.allclose(per_image[1:], net(x[1:], noise_level=50), atol=1e-6)
        assert not torch.allclose(per_image[:1], net(x[:1]))  # the map is an input the output depends on
    plain = tiny(noise_level=None)
    assert plain.Conv1.conv.conv.in_channels == 1
    assert plain(torch.rand(1, 31, 4, 4)).shape == (1, 31, 4, 4)  # a 31-band hyperspectral image


@pytest.mark.parametrize('num_down, size, pad', [(2, (13, 6), (0, 2, 0, 3)),  # to 16 x 8, multiples of 2**2
                                                 (2, (13, 8), (0, 0, 0, 3)),  # the height alone
                                                 (2, (8, 6), (0, 2, 0, 0)),  # the width alone
                                                 (3, (13, 6), (0, 2, 0, 3))])  # to 16 x 8, multiples of 2**3
def test_any_size_is_replicate_padded_to_the_unet_multiple_and_cropped_back(num_down, size, pad):
    net = tiny(num_down=num_down)
    x = torch.rand(1, 3, *size)
    with torch.no_grad():
        out = net(x)
        padded = nn.functional.pad(x, pad, mode='replicate')
        assert out.shape == x.shape
        assert torch.equal(out, net(padded)[..., :size[0], :size[1]])
    with pytest.raises(ValueError, match=r'GRUNet: expected an \(N, bands, H, W\) tensor'):
        net(x.unsqueeze(1))


def test_gradients_match_finite_differences_in_float64():
    net = GRUNet(num_feat=1, num_down=1).double()
    x = torch.rand(1, 3, 4, 4, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(net, (x, ), eps=1e-6, atol=1e-5)


def test_checkpoints_load_strictly_through_basicsr_load_network(tmp_path):
    saved = tiny()
    model = BaseModel.__new__(BaseModel)  # load_network needs no options
    x = torch.rand(1, 3, 8, 8)
    for name, checkpoint in (('ours.pth', {'params': saved.state_dict()}),
                             ('grunet.pth', {'net': saved.state_dict(), 'epoch': 50, 'iteration': 1})):
        torch.save(checkpoint, tmp_path / name)
        loaded = GRUNet(num_feat=2, num_down=2, noise_level=25).eval()
        model.load_network(loaded, str(tmp_path / name), strict=True, param_key='net' if 'net' in checkpoint
                           else 'params')
        with torch.no_grad():
            assert torch.equal(loaded(x), saved(x))


@pytest.mark.parametrize('options, message', [
    ({'num_feat': 0}, "option 'num_feat' must be an integer >= 1"),
    ({'num_down': 0}, "option 'num_down' must be an integer >= 1"),
    ({'num_down': 2.0}, "option 'num_down' must be an integer >= 1"),
    ({'noise_level': -5}, "option 'noise_level' must be >= 0"),
    ({'noise_level': 'high'}, "option 'noise_level' must be a number"),
])
def test_bad_options_name_the_option(options, message):
    with pytest.raises(OptionError, match=f'GRUNet: {message}'):
        GRUNet(**options)


def test_a_network_without_the_map_refuses_a_noise_level():
    with pytest.raises(ValueError, match='has no noise-level map'):
        tiny(noise_level=None)(torch.rand(1, 3, 4, 4), noise_level=25)
