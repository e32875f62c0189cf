"""HAT from spandrel in BasicSR's registry: the authors' HAT-SR x4 defaults and state-dict layout,
padding to the window size, and their released checkpoints through ``pretrain_network_g``."""
import inspect

import pytest
import spandrel
import torch
import torch.nn.functional as F
from basicsr.archs import build_network
from basicsr.models.sr_model import SRModel
from spandrel.architectures.HAT import HAT as SpandrelHAT

from losses_plugin.archs.hat_arch import HAT
from conftest import construction

# network_g of the authors' options/test/HAT_SRx4.yml (XPixelGroup/HAT), the released HAT_SRx4.pth
AUTHORS_HAT_SRX4 = {'upscale': 4, 'in_chans': 3, 'img_size': 64, 'window_size': 16, 'compress_ratio': 3,
                    'squeeze_factor': 30, 'conv_scale': 0.01, 'overlap_ratio': 0.5, 'img_range': 1.,
                    'depths': [6, 6, 6, 6, 6, 6], 'embed_dim': 180, 'num_heads': [6, 6, 6, 6, 6, 6], 'mlp_ratio': 2,
                    'upsampler': 'pixelshuffle', 'resi_connection': '1conv'}
TINY = {'type': 'HAT', 'embed_dim': 12, 'depths': [1, 1], 'num_heads': [2, 2], 'window_size': 4, 'num_feat': 8,
        'squeeze_factor': 4, 'upscale': 4}


def tiny_hat(**changes):
    torch.manual_seed(0)
    return build_network(dict(TINY, **changes)).eval()


def test_defaults_are_the_authors_hat_srx4():
    defaults = {name: p.default for name, p in inspect.signature(HAT).parameters.items()}
    for name, value in AUTHORS_HAT_SRX4.items():
        assert list(defaults[name]) == value if name in ('depths', 'num_heads') else defaults[name] == value, name


# the rest of the authors' HAT-SR x4 network_g: hat_arch.py's own defaults, which their options leave as they are
AUTHORS_HAT_DEFAULTS = {'num_feat': 64, 'patch_size': 1, 'qkv_bias': True, 'qk_scale': None, 'drop_rate': 0.,
                        'attn_drop_rate': 0., 'drop_path_rate': 0.1, 'ape': False, 'patch_norm': True,
                        'use_checkpoint': False}


def test_the_defaults_build_the_authors_hat_srx4():
    """Built, not read from the signature: every default reaches the network (20.8 M parameters)."""
    torch.manual_seed(0)
    ours = HAT()
    theirs = SpandrelHAT(**AUTHORS_HAT_SRX4, **AUTHORS_HAT_DEFAULTS)
    assert construction(ours) == construction(theirs)
    assert sum(p.numel() for p in ours.parameters()) == pytest.approx(20.8e6, rel=0.01)


def test_every_option_reaches_spandrels_network():
    options = {'upscale': 2, 'in_chans': 1, 'img_size': 32, 'window_size': 8, 'compress_ratio': 2,
               'squeeze_factor': 3, 'conv_scale': 0.02, 'overlap_ratio': 0.25, 'img_range': 255., 'depths': [2, 1],
               'embed_dim': 12, 'num_heads': [3, 2], 'mlp_ratio': 3., 'upsampler': 'pixelshuffle',
               'resi_connection': 'identity', 'num_feat': 6, 'patch_size': 1, 'qkv_bias': False, 'qk_scale': 0.3,
               'drop_rate': 0.2, 'attn_drop_rate': 0.3, 'drop_path_rate': 0.2, 'ape': True, 'patch_norm': False,
               'use_checkpoint': True}
    assert set(options) == set(inspect.signature(HAT).parameters)
    assert construction(HAT(**options)) == construction(SpandrelHAT(**options))


def test_output_is_upscaled_and_inputs_are_padded_to_the_window_size():
    net = tiny_hat()
    x = torch.rand(1, 3, 10, 13)  # neither side a multiple of the window (4)
    with torch.no_grad():
        out = net(x)
        padded = net(F.pad(x, (0, 3, 0, 2), mode='reflect'))  # the multiple of 4 that the net pads to
    assert out.shape == (1, 3, 40, 52) and padded.shape == (1, 3, 48, 64)
    assert torch.allclose(out, padded[..., :40, :52], atol=1e-6)
    assert net.input_multiple == 4


def test_state_dict_has_the_authors_layout():
    net = tiny_hat(window_size=8, overlap_ratio=0.5, mlp_ratio=2.)
    state = net.state_dict()
    for key in ('conv_first.weight', 'relative_position_index_SA', 'relative_position_index_OCA',
                'layers.1.residual_group.blocks.0.attn.relative_position_bias_table',
                'layers.0.residual_group.overlap_attn.qkv.weight', 'conv_after_body.weight',
                'conv_before_upsample.0.weight', 'upsample.2.weight', 'conv_last.weight'):
        assert key in state, key
    # spandrel recognises the authors' checkpoints by their keys and reads the hyperparameters from the shapes
    loaded = spandrel.ModelLoader().load_from_state_dict(state)
    assert loaded.architecture.id == 'HAT' and loaded.scale == 4
    model = loaded.model
    assert (model.window_size, model.embed_dim, model.overlap_ratio, model.mlp_ratio) == (8, 12, 0.5, 2.)
    assert set(model.state_dict()) == set(state)


def test_a_released_checkpoint_loads_through_pretrain_network_g(tmp_path):
    """HAT_SRx4.pth keeps its weights under 'params_ema'; a random one of the same layout stands in."""
    released = tiny_hat().state_dict()
    path = tmp_path / 'HAT_SRx4.pth'
    torch.save({'params_ema': released}, path)
    opt = {'num_gpu': 0, 'is_train': False, 'dist': False, 'network_g': dict(TINY),
           'path': {'pretrain_network_g': str(path), 'param_key_g': 'params_ema', 'strict_load_g': True}}
    torch.manual_seed(1)  # a different random init, which loading must replace
    net_g = SRModel(opt).net_g
    for key, value in net_g.state_dict().items():
        assert torch.equal(value, released[key]), key


@pytest.mark.parametrize('option, value, message', [('upsampler', 'pixelshuffledirect', "'upsampler' must be one of"),
                                                    ('num_heads', [5, 2], "'embed_dim' \\(12\\) must be divisible"),
                                                    ('depths', [1], "'depths' \\[1\\] and 'num_heads'")])
def test_bad_options_are_one_line_errors(option, value, message):
    with pytest.raises(ValueError, match=message):
        build_network(dict(TINY, **{option: value}))
