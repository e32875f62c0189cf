"""Every error of the architectures (``archs/*.py``, installed as ``losses_plugin.archs``) names the network,
the option or input and what was expected, in one line; each bound sits where the message says.

Heavy networks (HAT, NLSN, MPRNet) are not built to show that a bound value passes: it is given with a
later, cheap mistake, and that later message proves the earlier check let the value through."""
import re

import pytest
import torch

from losses_plugin.archs.backbone_features import BackboneWithFeatures
from losses_plugin.archs.class_module_arch import ClassModule
from losses_plugin.archs.dncnn_arch import DnCNN
from losses_plugin.archs.fgd_arch import FGDNet
from losses_plugin.archs.fixed_sum import FixedSum, fixed_sum
from losses_plugin.archs.grunet_arch import GRUNet
from losses_plugin.archs.hat_arch import HAT
from losses_plugin.archs.lapsrn_arch import LapSRN
from losses_plugin.archs.mprnet_arch import MPRNet
from losses_plugin.archs.nlsn_arch import NLSN
from losses_plugin.archs.srcnn_arch import SRCNN
from losses_plugin.archs.tlw_weighting_arch import TLWWeightingNet
from losses_plugin.archs.uncertainty_sr_arch import UncertaintySRNet
from losses_plugin.archs.vdsr_arch import VDSR
from losses_plugin.checks import OptionError

# a backbone of a few parameters: convolutions conv1, conv2, conv3 (1x1), activations act1, act2
BACKBONE = {'type': 'SRCNN', 'num_in_ch': 1, 'num_out_ch': 1, 'num_feat': 2, 'num_feat2': 2, 'kernel_sizes': [1, 1, 1],
            'upscale': 1, 'upsampling': 'none'}
TINY_NLSN = {'num_feat': 4, 'num_block': 1, 'n_hashes': 1, 'chunk_size': 4, 'reduction': 2, 'attention_every': 1,
             'upscale': 2}
TINY_HAT = {'embed_dim': 4, 'depths': [1], 'num_heads': [1], 'window_size': 2, 'num_feat': 4, 'squeeze_factor': 4,
            'compress_ratio': 1, 'img_size': 4}


def exact(message):
    return '^' + re.escape(message) + '$'


def choice(owner, option, choices, got):
    return exact(f"{owner}: option '{option}' must be one of {', '.join(map(repr, choices))}, got {got!r}")


def integer(owner, option, minimum, got):
    return exact(f"{owner}: option '{option}' must be an integer >= {minimum}, got {got!r}")


def number(owner, option, expected, got):
    return exact(f"{owner}: option '{option}' must be {expected}, got {got!r}")


def fixed_sum_k(got):
    return exact(f'FixedSum: k (the target mean weight) must be a number in (0, 1], got {got!r}')


NLSN_AGREE = re.escape("NLSN: options 'num_in_ch' (3), 'num_out_ch' (3) and the length of 'rgb_mean' (1) must agree")
HAT_GROUPS = re.escape("HAT: options 'depths' [1] and 'num_heads' [1, 1] must have one entry per residual group each")
MPRNET_RGB = exact('MPRNet: in_c and out_c must be 3 (its supervised attention modules are RGB), got 1 and 3')


def nlsn(**changes):
    return NLSN(**dict(TINY_NLSN, **changes))


def hat(**changes):
    return HAT(**dict(TINY_HAT, **changes))


# (id, build, exception class, message)
OPTION_ERRORS = [
    # BackboneWithFeatures, through both networks that wrap it
    *[case for owner, cls in (('FGDNet', FGDNet), ('UncertaintySRNet', UncertaintySRNet)) for case in (
        (f'{owner}-backbone-none', lambda cls=cls: cls(None), OptionError,
         exact(f"{owner}: option 'backbone' must be a network's options with a 'type', got None")),
        (f'{owner}-backbone-no-type', lambda cls=cls: cls({'num_feat': 4}), OptionError,
         exact(f"{owner}: option 'backbone' must be a network's options with a 'type', got {{'num_feat': 4}}")),
        (f'{owner}-feature_module-missing', lambda cls=cls: cls(BACKBONE), OptionError,
         exact(f"{owner}: SRCNN has no module 'conv_last' (option feature_module); its last convolutions: "
               'conv1, conv2, conv3')),
        (f'{owner}-feature_module-empty', lambda cls=cls: cls(BACKBONE, feature_module=''), OptionError,
         exact(f"{owner}: SRCNN has no module '' (option feature_module); its last convolutions: conv1, conv2, conv3")),
        (f'{owner}-feature_module-not-conv', lambda cls=cls: cls(BACKBONE, feature_module='act1'), OptionError,
         exact(f"{owner}: feature_module 'act1' must be a convolution")),
    )],
    ('BackboneWithFeatures-feature_module-names-the-last-4-convolutions', lambda: BackboneWithFeatures(
        {'type': 'EDSR', 'num_in_ch': 3, 'num_out_ch': 3, 'num_feat': 4, 'num_block': 1, 'upscale': 2}, 'tail'),
     OptionError, exact("BackboneWithFeatures: EDSR has no module 'tail' (option feature_module); its last "
                        'convolutions: body.0.conv2, conv_after_body, upsample.0, conv_last')),
    ('BackboneWithFeatures-default-owner', lambda: BackboneWithFeatures([]), OptionError,
     exact("BackboneWithFeatures: option 'backbone' must be a network's options with a 'type', got []")),
    # DnCNN
    *[(f'DnCNN-num_conv-{n!r}', lambda n=n: DnCNN(num_conv=n), OptionError, integer('DnCNN', 'num_conv', 2, n))
      for n in (1, 2.5, '3', True)],
    ('DnCNN-residual', lambda: DnCNN(num_in_ch=1, num_out_ch=3, num_conv=2, num_feat=1), OptionError,
     exact('DnCNN: residual learning needs num_in_ch == num_out_ch')),
    # FGDNet's own options
    *[(f'FGDNet-num_bins-{bins!r}', lambda bins=bins: FGDNet(BACKBONE, 'conv3', num_bins=bins, area_sizes=[1]),
       OptionError, exact(f"FGDNet: option 'num_bins' must be an integer >= 2, got {bins!r}"))
      for bins in (1, True, 2.0)],
    *[(f'FGDNet-area_sizes-{sizes!r}', lambda sizes=sizes: FGDNet(BACKBONE, 'conv3', num_bins=4, area_sizes=sizes),
       OptionError, exact(f"FGDNet: option 'area_sizes' must be odd bin counts in 1..4, got {sizes!r}"))
      for sizes in ([], [2], [0], [-1], [5], [1, 3.0], ['3'], None)],
    *[(f'FGDNet-bin_prior-{prior!r}', lambda prior=prior: FGDNet(BACKBONE, 'conv3', area_sizes=[1], bin_prior=prior),
       OptionError, number('FGDNet', 'bin_prior', expected, prior))
      for prior, expected in ((-1e-9, '>= 0'), (True, 'a number'), ('4', 'a number'))],
    ('FGDNet-detach_bin_head', lambda: FGDNet(BACKBONE, 'conv3', area_sizes=[1], detach_bin_head=1), OptionError,
     choice('FGDNet', 'detach_bin_head', (True, False), 1)),
    # FixedSum; TLWWeightingNet's k (its initial ratio)
    *[(f'FixedSum-k-{k!r}', lambda k=k: FixedSum(k), ValueError, fixed_sum_k(k))
      for k in (0, -0.5, 1 + 1e-9, True, '0.3')],
    ('FixedSum-set_k', lambda: FixedSum().set_k(0), ValueError, fixed_sum_k(0)),
    ('fixed_sum-k', lambda: fixed_sum(torch.zeros(1, 1, 2, 2), 2), ValueError, fixed_sum_k(2)),
    ('TLWWeightingNet-k=0', lambda: TLWWeightingNet(num_feat=1, k=0), OptionError,
     number('TLWWeightingNet', 'k', '> 0', 0)),
    ('TLWWeightingNet-k=1.5', lambda: TLWWeightingNet(num_feat=1, k=1.5), OptionError,
     number('TLWWeightingNet', 'k', '<= 1', 1.5)),
    ('TLWWeightingNet-k=true', lambda: TLWWeightingNet(num_feat=1, k=True), OptionError,
     number('TLWWeightingNet', 'k', 'a number', True)),
    # GRUNet
    ('GRUNet-num_feat', lambda: GRUNet(num_feat=0), OptionError, integer('GRUNet', 'num_feat', 1, 0)),
    ('GRUNet-num_down', lambda: GRUNet(num_feat=1, num_down=0), OptionError, integer('GRUNet', 'num_down', 1, 0)),
    ('GRUNet-num_down-float', lambda: GRUNet(num_feat=1, num_down=1.0), OptionError,
     integer('GRUNet', 'num_down', 1, 1.0)),
    ('GRUNet-noise_level', lambda: GRUNet(num_feat=1, num_down=1, noise_level=-1e-9), OptionError,
     number('GRUNet', 'noise_level', '>= 0', -1e-9)),
    ('GRUNet-noise_level-str', lambda: GRUNet(num_feat=1, num_down=1, noise_level='25'), OptionError,
     number('GRUNet', 'noise_level', 'a number', '25')),
    # HAT
    ('HAT-upsampler', lambda: hat(upsampler='pixelshuffledirect'), OptionError,
     choice('HAT', 'upsampler', ('pixelshuffle',), 'pixelshuffledirect')),
    ('HAT-resi_connection', lambda: hat(resi_connection='3conv'), OptionError,
     choice('HAT', 'resi_connection', ('1conv', 'identity'), '3conv')),
    *[(f'HAT-{option}', lambda option=option: hat(**{option: 0}), OptionError, integer('HAT', option, 1, 0))
      for option in ('window_size', 'embed_dim', 'upscale')],
    ('HAT-upscale-float', lambda: hat(upscale=4.0), OptionError, integer('HAT', 'upscale', 1, 4.0)),
    ('HAT-groups', lambda: hat(depths=[1], num_heads=[1, 1]), OptionError, '^' + HAT_GROUPS + '$'),
    ('HAT-embed_dim-heads', lambda: hat(embed_dim=5, num_heads=[2]), OptionError,
     exact("HAT: option 'embed_dim' (5) must be divisible by every 'num_heads' ([2])")),
    # LapSRN
    *[(f'LapSRN-upscale-{scale}', lambda scale=scale: LapSRN(upscale=scale), OptionError,
       exact(f"LapSRN: option 'upscale' must be 3 or a power of two (2, 4, 8, ...), got {scale!r}"))
      for scale in (0, 1, 5, 6, 12, 4.0, '4', True)],
    ('LapSRN-channels', lambda: LapSRN(num_in_ch=1, num_out_ch=3), OptionError,
     exact('LapSRN: adds residuals to its input image, so num_in_ch (1) must equal num_out_ch (3)')),
    # MPRNet (refused before spandrel-extra-arches is imported)
    *[(f'MPRNet-{option}', lambda option=option: MPRNet(**{option: 0}), OptionError,
       integer('MPRNet', option, 1, 0))
      for option in ('n_feat', 'scale_unetfeats', 'scale_orsnetfeats', 'num_cab', 'kernel_size', 'reduction')],
    *[(f'MPRNet-n_feat-{n!r}', lambda n=n: MPRNet(n_feat=n), OptionError, integer('MPRNet', 'n_feat', 1, n))
      for n in ('96', 1.5, True)],
    ('MPRNet-in_c', lambda: MPRNet(in_c=1), OptionError, MPRNET_RGB),
    ('MPRNet-out_c', lambda: MPRNet(out_c=1), OptionError,
     exact('MPRNet: in_c and out_c must be 3 (its supervised attention modules are RGB), got 3 and 1')),
    # NLSN
    *[(f'NLSN-{option}', lambda option=option, bad=bad: nlsn(**{option: bad}), OptionError,
       integer('NLSN', option, bad + 1, bad))
      for option, bad in (('num_feat', 0), ('num_block', -1), ('n_hashes', 0), ('chunk_size', 0), ('reduction', 0),
                          ('attention_every', 0), ('upscale', 1))],
    ('NLSN-upscale-float', lambda: nlsn(upscale=2.0), OptionError, integer('NLSN', 'upscale', 2, 2.0)),
    *[(f'NLSN-upscale-{scale}', lambda scale=scale: nlsn(upscale=scale), OptionError,
       exact(f"NLSN: option 'upscale' must be 3 or a power of two, got {scale}")) for scale in (5, 6, 12)],
    ('NLSN-reduction', lambda: nlsn(num_feat=4, reduction=5), OptionError,
     exact("NLSN: option 'reduction' (5) must not exceed num_feat (4)")),
    ('NLSN-res_scale', lambda: nlsn(res_scale='0.1'), OptionError, number('NLSN', 'res_scale', 'a number', '0.1')),
    ('NLSN-img_range', lambda: nlsn(img_range=0), OptionError, number('NLSN', 'img_range', '> 0', 0)),
    ('NLSN-channels', lambda: nlsn(num_in_ch=1), OptionError,
     exact("NLSN: options 'num_in_ch' (1), 'num_out_ch' (3) and the length of 'rgb_mean' (3) must agree: the mean "
           'is removed and added back')),
    ('NLSN-rgb_mean', lambda: nlsn(rgb_mean=(0.5,)), OptionError, '^' + NLSN_AGREE),
    # SRCNN
    ('SRCNN-upsampling', lambda: SRCNN(upsampling='nearest'), OptionError,
     exact("SRCNN: option 'upsampling' must be one of ('bicubic', 'bilinear', 'none'), got 'nearest'")),
    ('SRCNN-act', lambda: SRCNN(act='elu'), OptionError,
     exact("SRCNN: option 'act' must be one of ('relu', 'prelu'), got 'elu'")),
    # TLWWeightingNet
    *[(f'TLWWeightingNet-temperature-{t!r}', lambda t=t: TLWWeightingNet(num_feat=1, temperature=t), OptionError,
       number('TLWWeightingNet', 'temperature', expected, t))
      for t, expected in ((0, '> 0'), (-1, '> 0'), (True, 'a number'), ('0.1', 'a number'))],
    ('TLWWeightingNet-num_samples', lambda: TLWWeightingNet(num_feat=1, num_samples=0), OptionError,
     integer('TLWWeightingNet', 'num_samples', 1, 0)),
    ('TLWWeightingNet-channels_last', lambda: TLWWeightingNet(num_feat=1, channels_last=1), OptionError,
     choice('TLWWeightingNet', 'channels_last', (True, False), 1)),
    # UncertaintySRNet
    ('UncertaintySRNet-channels_last', lambda: UncertaintySRNet(BACKBONE, 'conv3', num_feat=1, channels_last='yes'),
     OptionError, choice('UncertaintySRNet', 'channels_last', (True, False), 'yes')),
    # VDSR
    ('VDSR-num_conv', lambda: VDSR(num_conv=2), OptionError, integer('VDSR', 'num_conv', 3, 2)),
    ('VDSR-channels', lambda: VDSR(num_in_ch=1, num_out_ch=3, num_conv=3, num_feat=1), OptionError,
     exact('VDSR: predicts a residual, so num_in_ch (1) must equal num_out_ch (3)')),
]


@pytest.mark.parametrize('build, error, message', [case[1:] for case in OPTION_ERRORS],
                         ids=[case[0] for case in OPTION_ERRORS])
def test_option_error_names_network_option_and_expectation(build, error, message):
    with pytest.raises(error, match=message) as info:
        build()
    assert '\n' not in str(info.value)


# (id, build): the value at each bound is accepted (a tiny network is built)
ACCEPTED = [
    ('DnCNN-num_conv=2', lambda: DnCNN(num_conv=2, num_feat=1)),
    ('DnCNN-no-residual', lambda: DnCNN(num_in_ch=1, num_out_ch=3, num_conv=2, num_feat=1, residual=False)),
    ('FGDNet-num_bins=2', lambda: FGDNet(BACKBONE, 'conv3', num_bins=2, area_sizes=[1], num_out_ch=1)),
    ('FGDNet-area_sizes=num_bins', lambda: FGDNet(BACKBONE, 'conv3', num_bins=3, area_sizes=[1, 3], num_out_ch=1,
                                                  class_module={'num_in_ch': 1, 'num_feat': 1})),
    ('FGDNet-bin_prior=0', lambda: FGDNet(BACKBONE, 'conv3', area_sizes=[1], bin_prior=0, detach_bin_head=True)),
    ('UncertaintySRNet-conv3', lambda: UncertaintySRNet(BACKBONE, 'conv3', num_feat=1, channels_last=False)),
    ('FixedSum-k=1e-9', lambda: FixedSum(1e-9)),
    ('FixedSum-k=1', lambda: FixedSum(1)),
    ('FixedSum-set_k=1', lambda: FixedSum().set_k(1)),
    ('GRUNet-num_feat=1-num_down=1-noise_level=0', lambda: GRUNet(num_feat=1, num_down=1, noise_level=0)),
    ('GRUNet-noise_level=None', lambda: GRUNet(num_feat=1, num_down=1, noise_level=None)),
    ('HAT-tiny', lambda: hat()),
    ('HAT-resi_connection=identity', lambda: hat(resi_connection='identity')),
    ('HAT-embed_dim-divisible', lambda: hat(embed_dim=6, num_heads=[2, 3], depths=[1, 1])),
    *[(f'LapSRN-upscale={scale}', lambda scale=scale: LapSRN(num_feat=1, depth=1, upscale=scale))
      for scale in (2, 3, 4, 8)],
    ('SRCNN-bilinear-prelu', lambda: SRCNN(num_feat=1, num_feat2=1, upsampling='bilinear', act='prelu')),
    ('SRCNN-none', lambda: SRCNN(num_feat=1, num_feat2=1, upsampling='none')),
    ('TLWWeightingNet-temperature=1e-9-num_samples=1', lambda: TLWWeightingNet(num_feat=1, temperature=1e-9,
                                                                               num_samples=1, channels_last=False)),
    ('TLWWeightingNet-k=1', lambda: TLWWeightingNet(num_feat=1, k=1)),
    ('VDSR-num_conv=3', lambda: VDSR(num_conv=3, num_feat=1)),
]


@pytest.mark.parametrize('build', [case[1] for case in ACCEPTED], ids=[case[0] for case in ACCEPTED])
def test_value_at_the_bound_is_accepted(build):
    build()


# (id, build, message of the later check that a bound value reaches)
PASSED_ON = [
    *[(f'HAT-{option}=1', lambda option=option: hat(**{option: 1}, depths=[1], num_heads=[1, 1]), HAT_GROUPS)
      for option in ('window_size', 'embed_dim', 'upscale')],
    *[(f'MPRNet-{option}=1', lambda option=option: MPRNet(**{option: 1}, in_c=1), MPRNET_RGB)
      for option in ('n_feat', 'scale_unetfeats', 'scale_orsnetfeats', 'num_cab', 'kernel_size', 'reduction')],
    *[(f'NLSN-{option}={value}', lambda option=option, value=value: nlsn(**{option: value}, rgb_mean=(0.5,)),
       NLSN_AGREE)
      for option, value in (('num_block', 0), ('n_hashes', 1), ('chunk_size', 1), ('reduction', 1),
                            ('attention_every', 1), ('upscale', 2), ('upscale', 3), ('upscale', 8),
                            ('res_scale', -1), ('img_range', 1e-9))],
    ('NLSN-num_feat=1', lambda: nlsn(num_feat=1, reduction=1, rgb_mean=(0.5,)), NLSN_AGREE),
    ('NLSN-reduction=num_feat', lambda: nlsn(num_feat=4, reduction=4, rgb_mean=(0.5,)), NLSN_AGREE),
]


@pytest.mark.parametrize('build, later', [case[1:] for case in PASSED_ON], ids=[case[0] for case in PASSED_ON])
def test_value_at_the_bound_reaches_the_next_check(build, later):
    with pytest.raises(OptionError, match='^' + later):
        build()


# ---------------------------------------------------------------------------------------------------------
# inputs

def test_class_module_needs_4x4():
    module = ClassModule(num_in_ch=1, num_classes=2, num_feat=1)
    for shape in ((3, 4), (4, 3)):
        with pytest.raises(ValueError, match=exact(f'ClassModule: the LR input must be at least 4x4, got {shape}')):
            module(torch.zeros(1, 1, *shape))
    assert module(torch.zeros(1, 1, 4, 4)).shape == (1, 2, 1, 1)


def test_mprnet_needs_8x8():
    # the check comes before the network is used: MPRNet.forward refuses without building one
    for h, w in ((7, 8), (8, 7)):
        with pytest.raises(ValueError, match=exact(f'MPRNet: inputs must be at least 8x8 pixels, got {h}x{w}')):
            MPRNet.forward(None, torch.zeros(1, 3, h, w))


def test_grunet_input_errors():
    net = GRUNet(num_feat=1, num_down=1, noise_level=None)
    with pytest.raises(ValueError, match=exact('GRUNet: expected an (N, bands, H, W) tensor, got shape (1, 2, 2)')):
        net(torch.zeros(1, 2, 2))
    with pytest.raises(ValueError, match=exact('GRUNet: this network has no noise-level map (noise_level: null); call '
                                               'it without one')):
        net(torch.zeros(1, 1, 2, 2), noise_level=25)
    assert net(torch.zeros(1, 1, 2, 2)).shape == (1, 1, 2, 2)
    assert GRUNet(num_feat=1, num_down=1)(torch.zeros(1, 1, 2, 2), noise_level=0).shape == (1, 1, 2, 2)


def test_backbone_that_never_calls_the_feature_module():
    wrapped = BackboneWithFeatures(BACKBONE, 'conv3')
    wrapped.backbone.forward = lambda x: x
    with pytest.raises(RuntimeError, match=exact('SRCNN never called conv3 in its forward')):
        wrapped(torch.zeros(1, 1, 2, 2))


def test_backbone_features_that_do_not_cover_the_padded_input():
    wrapped = BackboneWithFeatures(BACKBONE, 'conv3')
    wrapped.backbone.input_multiple = 4
    with pytest.raises(RuntimeError, match=exact('SRCNN: the features entering conv3 ((5, 5)) are not a multiple of '
                                                 'its padded input (4, 4)')):
        wrapped.image_part(torch.zeros(1, 2, 5, 5), torch.zeros(1, 1, 3, 3))
    assert wrapped.image_part(torch.zeros(1, 2, 8, 8), torch.zeros(1, 1, 3, 3)).shape == (1, 2, 6, 6)
