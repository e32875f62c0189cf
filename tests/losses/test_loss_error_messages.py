"""Every error of the losses (``losses_plugin/losses/*.py``) says who refuses what: the loss (or option
path), the option or tensor, and what was expected, in one line; and each bound sits where it says.

Messages are matched from their start (``^``), so a renamed owner, option or bound fails here."""
import math
import re

import pytest
import torch

from losses_plugin.checks import OptionError
from losses_plugin.losses.asymmetric_loss import AsymmetricLoss
from losses_plugin.losses.edge_loss import EdgeLoss
from losses_plugin.losses.fgd_loss import FineGrainedDynamicLoss
from losses_plugin.losses.gaussian_filter import gaussian_filter
from losses_plugin.losses.ms_ssim_l1_loss import MSSSIML1Loss
from losses_plugin.losses.ms_ssim_loss import MSSSIMLoss
from losses_plugin.losses.sp_loss import SPLoss
from losses_plugin.losses.ssim_loss import SSIMLoss
from losses_plugin.losses.tlw_judge import LPIPSJudge, MSSSIMJudge, SSIMJudge, build_judge
from losses_plugin.losses.tlw_loss import TLWLoss
from losses_plugin.losses.udl_loss import UDLLoss

PIXEL_LOSSES = (AsymmetricLoss, MSSSIML1Loss, MSSSIMLoss, SPLoss, SSIMLoss)


def choice(owner, option, choices, got):
    """The whole line of ``checks.check_choice``."""
    listed = ', '.join(map(repr, choices))
    return '^' + re.escape(f"{owner}: option '{option}' must be one of {listed}, got {got!r}") + '$'


def number(owner, option, expected, got):
    """The whole line of ``checks.check_number`` (``expected``: 'a number', '>= 0', '> 0')."""
    return '^' + re.escape(f"{owner}: option '{option}' must be {expected}, got {got!r}") + '$'


def sigmas(owner, got):
    return '^' + re.escape(f"{owner}: option 'sigmas' must be a non-empty list of positive numbers, got {got!r}") + '$'


def img(*shape, value=None):
    torch.manual_seed(0)
    return torch.rand(*shape) if value is None else torch.full(shape, value)


# (id, build, message) for options refused at construction; every one is an OptionError
OPTION_ERRORS = [
    # PixelLoss (pixel_loss_base): every subclass names itself
    *[(f'{cls.__name__}-loss_weight', lambda cls=cls: cls(loss_weight='1'),
       number(cls.__name__, 'loss_weight', 'a number', '1')) for cls in PIXEL_LOSSES],
    *[(f'{cls.__name__}-loss_weight-bool', lambda cls=cls: cls(loss_weight=True),
       number(cls.__name__, 'loss_weight', 'a number', True)) for cls in PIXEL_LOSSES],
    *[(f'{cls.__name__}-reduction', lambda cls=cls: cls(reduction='avg'),
       choice(cls.__name__, 'reduction', ('none', 'mean', 'sum'), 'avg')) for cls in PIXEL_LOSSES],
    # AsymmetricLoss
    ('AsymmetricLoss-base', lambda: AsymmetricLoss(base='l2'),
     choice('AsymmetricLoss', 'base', ('l1', 'mse', 'charbonnier'), 'l2')),
    ('AsymmetricLoss-mask', lambda: AsymmetricLoss(mask='tanh'),
     choice('AsymmetricLoss', 'mask', ('tanh_inverse', 'quartile'), 'tanh')),
    ('AsymmetricLoss-apply', lambda: AsymmetricLoss(apply='input'),
     choice('AsymmetricLoss', 'apply', ('loss', 'io'), 'input')),
    ('AsymmetricLoss-normalize', lambda: AsymmetricLoss(normalize=1),
     choice('AsymmetricLoss', 'normalize', (True, False), 1)),
    ('AsymmetricLoss-per_channel', lambda: AsymmetricLoss(per_channel='yes'),
     choice('AsymmetricLoss', 'per_channel', (True, False), 'yes')),
    # EdgeLoss
    ('EdgeLoss-eps', lambda: EdgeLoss(eps=-1e-9), number('EdgeLoss', 'eps', '>= 0', -1e-9)),
    ('EdgeLoss-eps-type', lambda: EdgeLoss(eps='1e-6'), number('EdgeLoss', 'eps', 'a number', '1e-6')),
    ('EdgeLoss-loss_weight', lambda: EdgeLoss(loss_weight=None), number('EdgeLoss', 'loss_weight', 'a number', None)),
    ('EdgeLoss-reduction', lambda: EdgeLoss(reduction='avg'),
     choice('EdgeLoss', 'reduction', ('none', 'mean', 'sum'), 'avg')),
    # FineGrainedDynamicLoss
    *[(f'FineGrainedDynamicLoss-{option}', lambda option=option: FineGrainedDynamicLoss(**{option: -1e-9}),
       number('FineGrainedDynamicLoss', option, '>= 0', -1e-9))
      for option in ('alpha', 'beta', 'average_weight', 'sr_weight')],
    *[(f'FineGrainedDynamicLoss-{option}-type', lambda option=option: FineGrainedDynamicLoss(**{option: None}),
       number('FineGrainedDynamicLoss', option, 'a number', None))
      for option in ('alpha', 'beta', 'average_weight', 'sr_weight')],
    ('FineGrainedDynamicLoss-loss_weight', lambda: FineGrainedDynamicLoss(loss_weight='1'),
     number('FineGrainedDynamicLoss', 'loss_weight', 'a number', '1')),
    ('FineGrainedDynamicLoss-regression_target', lambda: FineGrainedDynamicLoss(regression_target='bin'),
     choice('FineGrainedDynamicLoss', 'regression_target', ('gt', 'anchor'), 'bin')),
    # MSSSIML1Loss
    ('MSSSIML1Loss-alpha-low', lambda: MSSSIML1Loss(alpha=-1e-9), number('MSSSIML1Loss', 'alpha', '>= 0', -1e-9)),
    ('MSSSIML1Loss-alpha-high', lambda: MSSSIML1Loss(alpha=1 + 1e-9),
     '^' + re.escape(f"MSSSIML1Loss: option 'alpha' must be in [0, 1], got {1 + 1e-9!r}") + '$'),
    ('MSSSIML1Loss-padding', lambda: MSSSIML1Loss(padding='same'),
     choice('MSSSIML1Loss', 'padding', ('valid', 'reflect', 'zero'), 'same')),
    ('MSSSIML1Loss-data_range', lambda: MSSSIML1Loss(data_range=0), number('MSSSIML1Loss', 'data_range', '> 0', 0)),
    ('MSSSIML1Loss-sigmas-empty', lambda: MSSSIML1Loss(sigmas=[]), sigmas('MSSSIML1Loss', [])),
    ('MSSSIML1Loss-sigmas-zero', lambda: MSSSIML1Loss(sigmas=[1, 0]), sigmas('MSSSIML1Loss', [1, 0])),
    # MSSSIMLoss
    ('MSSSIMLoss-mode', lambda: MSSSIMLoss(mode='dyadic'),
     choice('MSSSIMLoss', 'mode', ('sigmas', 'pyramid'), 'dyadic')),
    ('MSSSIMLoss-padding', lambda: MSSSIMLoss(padding='same'),
     choice('MSSSIMLoss', 'padding', ('valid', 'reflect', 'zero'), 'same')),
    ('MSSSIMLoss-data_range', lambda: MSSSIMLoss(data_range=0), number('MSSSIMLoss', 'data_range', '> 0', 0)),
    ('MSSSIMLoss-sigmas-none', lambda: MSSSIMLoss(sigmas=None), sigmas('MSSSIMLoss', None)),
    ('MSSSIMLoss-sigmas-negative', lambda: MSSSIMLoss(sigmas=[-1.0]), sigmas('MSSSIMLoss', [-1.0])),
    ('MSSSIMLoss-sigmas-bool', lambda: MSSSIMLoss(sigmas=[True]), sigmas('MSSSIMLoss', [True])),
    ('MSSSIMLoss-sigmas-str', lambda: MSSSIMLoss(sigmas=['1']), sigmas('MSSSIMLoss', ['1'])),
    # SPLoss
    ('SPLoss-alpha', lambda: SPLoss(alpha=-1e-9), number('SPLoss', 'alpha', '>= 0', -1e-9)),
    ('SPLoss-base', lambda: SPLoss(base='huber'), choice('SPLoss', 'base', ('l1', 'mse', 'charbonnier'), 'huber')),
    ('SPLoss-data_range', lambda: SPLoss(data_range=0), number('SPLoss', 'data_range', '> 0', 0)),
    # SSIMLoss
    ('SSIMLoss-sigma', lambda: SSIMLoss(sigma=0), number('SSIMLoss', 'sigma', '> 0', 0)),
    ('SSIMLoss-sigma-type', lambda: SSIMLoss(sigma='1.5'), number('SSIMLoss', 'sigma', 'a number', '1.5')),
    *[(f'SSIMLoss-window_size-{size!r}', lambda size=size: SSIMLoss(window_size=size),
       '^' + re.escape(f"SSIMLoss: option 'window_size' must be an odd positive integer, got {size!r}") + '$')
      for size in (0, -1, 2, 3.0, '3')],
    ('SSIMLoss-data_range', lambda: SSIMLoss(data_range=0), number('SSIMLoss', 'data_range', '> 0', 0)),
    ('SSIMLoss-padding', lambda: SSIMLoss(padding='same'),
     choice('SSIMLoss', 'padding', ('valid', 'reflect', 'zero'), 'same')),
    # TLWLoss
    ('TLWLoss-base', lambda: TLWLoss(base='charbonnier'), choice('TLWLoss', 'base', ('l1', 'mse'), 'charbonnier')),
    ('TLWLoss-form', lambda: TLWLoss(form='sum'), choice('TLWLoss', 'form', ('weighted_sum', 'log_posterior'), 'sum')),
    ('TLWLoss-mse_offset', lambda: TLWLoss(mse_offset=-1e-9), number('TLWLoss', 'mse_offset', '>= 0', -1e-9)),
    ('TLWLoss-loss_weight', lambda: TLWLoss(loss_weight='1'), number('TLWLoss', 'loss_weight', 'a number', '1')),
    ('TLWLoss-mse_offset-mse', lambda: TLWLoss(base='mse', mse_offset=0),
     '^' + re.escape("TLWLoss: option 'mse_offset' must be > 0 with base 'mse' (it divides by |e| + offset)") + '$'),
    # UDLLoss
    ('UDLLoss-stage', lambda: UDLLoss(stage='both'), choice('UDLLoss', 'stage', ('esu', 'udl'), 'both')),
    ('UDLLoss-loss_weight', lambda: UDLLoss(loss_weight='1'), number('UDLLoss', 'loss_weight', 'a number', '1')),
    # TLW judges (their options are train.tlw.judge)
    ('SSIMJudge-sigma', lambda: SSIMJudge(sigma=0), number('train.tlw.judge (ssim)', 'sigma', '> 0', 0)),
    ('build_judge-ssim-sigma', lambda: build_judge({'type': 'ssim', 'sigma': -1}),
     number('train.tlw.judge (ssim)', 'sigma', '> 0', -1)),
    ('build_judge-type', lambda: build_judge({'type': 'lpips_vgg'}),
     '^' + re.escape("train.tlw.judge.type must be one of 'lpips', 'ms_ssim', 'ssim', 'l1', got 'lpips_vgg'") + '$'),
    ('build_judge-no-type', lambda: build_judge({'sigma': 1.5}),
     '^' + re.escape("train.tlw.judge.type must be one of 'lpips', 'ms_ssim', 'ssim', 'l1', got None") + '$'),
    ('build_judge-unknown-option', lambda: build_judge({'type': 'ssim', 'radius': 5}),
     r"^train\.tlw\.judge \(ssim\): .*unexpected keyword argument 'radius'$"),
    ('build_judge-l1-option', lambda: build_judge({'type': 'l1', 'sigma': 1}),
     r"^train\.tlw\.judge \(l1\): .*'sigma'"),
]


@pytest.mark.parametrize('build, message', [case[1:] for case in OPTION_ERRORS],
                         ids=[case[0] for case in OPTION_ERRORS])
def test_option_error_names_owner_option_and_expectation(build, message):
    with pytest.raises(OptionError, match=message) as info:
        build()
    assert '\n' not in str(info.value)


# (id, build) for the values right at each bound, accepted
ACCEPTED = [
    ('EdgeLoss-eps=0', lambda: EdgeLoss(eps=0)),
    *[(f'FineGrainedDynamicLoss-{option}=0', lambda option=option: FineGrainedDynamicLoss(**{option: 0}))
      for option in ('alpha', 'beta', 'average_weight', 'sr_weight')],
    ('FineGrainedDynamicLoss-loss_weight=-1', lambda: FineGrainedDynamicLoss(loss_weight=-1)),
    ('MSSSIML1Loss-alpha=0', lambda: MSSSIML1Loss(alpha=0)),
    ('MSSSIML1Loss-alpha=1', lambda: MSSSIML1Loss(alpha=1)),
    ('MSSSIML1Loss-data_range=1e-9', lambda: MSSSIML1Loss(data_range=1e-9)),
    ('MSSSIML1Loss-sigmas=[1e-9]', lambda: MSSSIML1Loss(sigmas=[1e-9])),
    ('MSSSIMLoss-data_range=1e-9', lambda: MSSSIMLoss(data_range=1e-9)),
    ('MSSSIMLoss-sigmas=[1]', lambda: MSSSIMLoss(sigmas=[1])),
    ('SPLoss-alpha=0', lambda: SPLoss(alpha=0)),
    ('SPLoss-data_range=1e-9', lambda: SPLoss(data_range=1e-9)),
    ('SPLoss-loss_weight=0', lambda: SPLoss(loss_weight=0)),
    ('SSIMLoss-sigma=1e-9', lambda: SSIMLoss(sigma=1e-9)),
    ('SSIMLoss-window_size=1', lambda: SSIMLoss(window_size=1)),
    ('SSIMLoss-window_size=3', lambda: SSIMLoss(window_size=3)),
    ('SSIMLoss-data_range=1e-9', lambda: SSIMLoss(data_range=1e-9)),
    ('TLWLoss-mse_offset=0-l1', lambda: TLWLoss(base='l1', mse_offset=0)),
    ('TLWLoss-mse_offset=1e-9-mse', lambda: TLWLoss(base='mse', mse_offset=1e-9)),
    ('TLWLoss-loss_weight=-1', lambda: TLWLoss(loss_weight=-1)),
    ('UDLLoss-loss_weight=0', lambda: UDLLoss(loss_weight=0)),
    ('SSIMJudge-sigma=1e-9', lambda: SSIMJudge(sigma=1e-9)),
    ('build_judge-default', lambda: build_judge(None)),
    ('build_judge-ssim', lambda: build_judge({'type': 'ssim', 'sigma': 1e-9})),
    *[(f'AsymmetricLoss-{option}-{value}', lambda option=option, value=value: AsymmetricLoss(**{option: value}))
      for option, values in (('base', ('l1', 'mse', 'charbonnier')), ('mask', ('tanh_inverse', 'quartile')),
                             ('apply', ('loss', 'io')), ('normalize', (True, False)), ('per_channel', (True, False)))
      for value in values],
    *[(f'{cls.__name__}-reduction-{r}', lambda cls=cls, r=r: cls(reduction=r))
      for cls in PIXEL_LOSSES for r in ('none', 'mean', 'sum')],
]


@pytest.mark.parametrize('build', [case[1] for case in ACCEPTED], ids=[case[0] for case in ACCEPTED])
def test_value_at_the_bound_is_accepted(build):
    build()


# ---------------------------------------------------------------------------------------------------------
# tensors: check_inputs / check_finite (pixel_loss_base and every loss that calls them)

def _input_cases(name, call):
    """check_inputs' four refusals through ``call(pred, target)``, all naming ``name``."""
    ok = img(1, 1, 2, 3)
    return [
        (f'{name}-pred-int', lambda: call(torch.zeros(1, 1, 2, 3, dtype=torch.long), ok),
         '^' + re.escape(f'{name}: pred must be a floating-point tensor, got torch.int64') + '$'),
        (f'{name}-target-int', lambda: call(ok, torch.zeros(1, 1, 2, 3, dtype=torch.uint8)),
         '^' + re.escape(f'{name}: target must be a floating-point tensor, got torch.uint8') + '$'),
        (f'{name}-target-list', lambda: call(ok, [[0.0]]),
         '^' + re.escape(f'{name}: target must be a floating-point tensor, got list') + '$'),
        (f'{name}-shape', lambda: call(ok, img(1, 1, 3, 2)),
         '^' + re.escape(f'{name}: pred and target must have the same shape, got (1, 1, 2, 3) and (1, 1, 3, 2)') + '$'),
        (f'{name}-dim', lambda: call(img(1, 2, 3), img(1, 2, 3)),
         '^' + re.escape(f'{name}: expected (N, C, H, W) or (N, T, C, H, W) tensors, got (1, 2, 3)') + '$'),
    ]


def _fgd(pred, target):
    return FineGrainedDynamicLoss()(pred, target, logits=torch.zeros(1, 2, *getattr(pred, 'shape', (1, 2, 3))[1:]))


def _tlw(pred, target):
    return TLWLoss()(pred, target, weights=torch.ones(1, 1, 1, 2, 3), wc=torch.ones(1, 1))


def _udl(pred, target):
    return UDLLoss()(pred, target, s=torch.zeros(1, 1, 1, 1))


TENSOR_ERRORS = [
    *_input_cases('SPLoss', lambda p, t: SPLoss()(p, t)),
    *[case for cls in PIXEL_LOSSES if cls is not SPLoss
      for case in _input_cases(cls.__name__, lambda p, t, cls=cls: cls()(p, t))[:1]],
    *_input_cases('EdgeLoss', lambda p, t: EdgeLoss()(p, t))[::2],
    *_input_cases('FineGrainedDynamicLoss', _fgd)[::2],
    *_input_cases('TLWLoss', _tlw)[::2],
    *_input_cases('UDLLoss', _udl)[::2],
    # the weight of PixelLoss.forward
    ('SPLoss-weight-no-broadcast', lambda: SPLoss()(img(1, 1, 2, 3), img(1, 1, 2, 3), weight=torch.ones(2)),
     '^' + re.escape('SPLoss: weight of shape (2,) does not broadcast to (1, 1, 2, 3)') + '$'),
    ('SPLoss-weight-grows', lambda: SPLoss()(img(1, 1, 2, 3), img(1, 1, 2, 3), weight=torch.ones(2, 1, 1, 1)),
     '^' + re.escape('SPLoss: weight of shape (2, 1, 1, 1) does not broadcast to (1, 1, 2, 3)') + '$'),
    ('SSIMLoss-weight-cropped-map', lambda: SSIMLoss(sigma=0.5)(img(1, 1, 5, 5), img(1, 1, 5, 5),
                                                               weight=torch.ones(1, 1, 5, 5)),
     '^' + re.escape('SSIMLoss: weight needs a loss map of the input size, but this loss scores (1, 1, 1, 1) of '
                     '(1, 1, 5, 5); use padding reflect or zero') + '$'),
    # check_finite
    ('SPLoss-target-nan', lambda: SPLoss(reduction='none')(img(1, 1, 2, 2), img(1, 1, 2, 2, value=math.nan)),
     '^' + re.escape('SPLoss: target contains NaN or Inf') + '$'),
    ('SSIMLoss-target-inf', lambda: SSIMLoss(sigma=0.5, padding='zero')(img(1, 1, 3, 3),
                                                                         img(1, 1, 3, 3, value=math.inf)),
     '^' + re.escape('SSIMLoss: target contains NaN or Inf') + '$'),
    ('SPLoss-weight-inf', lambda: SPLoss()(img(1, 1, 2, 2), img(1, 1, 2, 2), weight=torch.full((1, 1, 1, 1), math.inf)),
     '^' + re.escape('SPLoss: weight contains NaN or Inf') + '$'),
    # AsymmetricLoss's grey image
    ('AsymmetricLoss-grey-2-channels', lambda: AsymmetricLoss()(img(1, 2, 2, 2), img(1, 2, 2, 2)),
     '^' + re.escape('AsymmetricLoss: a grey image needs 1 or 3 channels, got 2; set per_channel: true for other '
                     'channel counts') + '$'),
    ('AsymmetricLoss-grey-4-channels-io', lambda: AsymmetricLoss(apply='io', base='charbonnier')(
        img(1, 4, 2, 2), img(1, 4, 2, 2)),
     '^' + re.escape('AsymmetricLoss: a grey image needs 1 or 3 channels, got 4')),
    # FineGrainedDynamicLoss: logits
    ('FineGrainedDynamicLoss-no-logits', lambda: FineGrainedDynamicLoss()(img(1, 1, 2, 2), img(1, 1, 2, 2)),
     '^' + re.escape('FineGrainedDynamicLoss needs the bin logits of FGDNet, which FGDModel provides: use model_type: '
                     'FGDModel with network_g: {type: FGDNet, ...}') + '$'),
    ('FineGrainedDynamicLoss-logits-dim', lambda: FineGrainedDynamicLoss()(
        img(1, 1, 2, 2), img(1, 1, 2, 2), logits=torch.zeros(1, 2, 2, 2)),
     '^' + re.escape('FineGrainedDynamicLoss: logits must be (N, K, C, H, W) with K >= 2 bins for targets of '
                     '(1, 1, 2, 2), got (1, 2, 2, 2)') + '$'),
    ('FineGrainedDynamicLoss-logits-one-bin', lambda: FineGrainedDynamicLoss()(
        img(1, 1, 2, 2), img(1, 1, 2, 2), logits=torch.zeros(1, 1, 1, 2, 2)),
     '^' + re.escape('FineGrainedDynamicLoss: logits must be (N, K, C, H, W) with K >= 2 bins for targets of '
                     '(1, 1, 2, 2), got (1, 1, 1, 2, 2)') + '$'),
    ('FineGrainedDynamicLoss-logits-shape', lambda: FineGrainedDynamicLoss()(
        img(1, 1, 2, 2), img(1, 1, 2, 2), logits=torch.zeros(1, 2, 1, 2, 3)),
     '^' + re.escape('FineGrainedDynamicLoss: logits must be (N, K, C, H, W) with K >= 2 bins for targets of '
                     '(1, 1, 2, 2), got (1, 2, 1, 2, 3)') + '$'),
    ('FineGrainedDynamicLoss-logits-batch', lambda: FineGrainedDynamicLoss()(
        img(1, 1, 2, 2), img(1, 1, 2, 2), logits=torch.zeros(2, 2, 1, 2, 2)),
     r'^FineGrainedDynamicLoss: logits must be \(N, K, C, H, W\) with K >= 2 bins'),
    # TLWLoss: weights and criteria
    *[(f'TLWLoss-missing-{missing}', lambda kwargs=kwargs: TLWLoss()(img(1, 1, 2, 2), img(1, 1, 2, 2), **kwargs),
       '^' + re.escape('TLWLoss needs the sampled weights and their criteria, which TLWModel provides: use it as '
                       'train.pixel_opt of model_type: TLWModel') + '$')
      for missing, kwargs in (('both', {}), ('wc', {'weights': torch.ones(1, 1, 1, 2, 2)}),
                              ('weights', {'wc': torch.ones(1, 1)}))],
    *[(f'TLWLoss-shapes-{label}', lambda w=w, wc=wc: TLWLoss()(img(2, 1, 2, 2), img(2, 1, 2, 2), weights=w, wc=wc),
       '^' + re.escape(f'TLWLoss: expected weights (T, *(2, 1, 2, 2)) and wc (T, 2), got {tuple(w.shape)} and '
                       f'{tuple(wc.shape)}') + '$')
      for label, w, wc in (('weights-dim', torch.ones(2, 1, 2, 2), torch.ones(1, 2)),
                           ('weights-shape', torch.ones(1, 2, 1, 2, 3), torch.ones(1, 2)),
                           ('wc-shape', torch.ones(3, 2, 1, 2, 2), torch.ones(3, 1)),
                           ('wc-samples', torch.ones(3, 2, 1, 2, 2), torch.ones(2, 2)))],
    *[(f'TLWLoss-wc-{value}-{form}', lambda value=value, form=form: TLWLoss(form=form)(
        img(1, 1, 2, 2), img(1, 1, 2, 2), weights=torch.ones(2, 1, 1, 2, 2), wc=torch.tensor([[1.0], [value]])),
       '^' + re.escape('TLWLoss: the weight criteria wc must be > 0') + '$')
      for value in (0.0, -1.0) for form in ('weighted_sum', 'log_posterior')],
    # UDLLoss: s
    ('UDLLoss-no-s', lambda: UDLLoss()(img(1, 1, 2, 2), img(1, 1, 2, 2)),
     '^' + re.escape('UDLLoss needs the uncertainty s, which UDLModel provides: use model_type: UDLModel') + '$'),
    ('UDLLoss-s-shape', lambda: UDLLoss()(img(1, 1, 2, 2), img(1, 1, 2, 2), s=torch.zeros(1, 2, 2, 2)),
     '^' + re.escape('UDLLoss: s of shape (1, 2, 2, 2) does not broadcast to (1, 1, 2, 2)') + '$'),
    # MSSSIMLoss pyramid and the Gaussian windows, each named by the loss that filters
    ('MSSSIMLoss-pyramid-small', lambda: MSSSIMLoss(mode='pyramid')(img(1, 1, 160, 161), img(1, 1, 160, 161)),
     '^' + re.escape("MSSSIMLoss: mode 'pyramid' with 5 levels needs images of at least 161x161, got (160, 161); "
                     "use mode 'sigmas'") + '$'),
    ('SSIMLoss-valid-window', lambda: SSIMLoss(sigma=0.5)(img(1, 1, 4, 5), img(1, 1, 4, 5)),
     '^' + re.escape("SSIMLoss: a 5x5 Gaussian window does not fit a 4x5 image with padding 'valid'; use padding "
                     "'reflect' or 'zero', or a smaller sigma") + '$'),
    ('SSIMLoss-valid-window-size', lambda: SSIMLoss(window_size=7)(img(1, 1, 6, 9), img(1, 1, 6, 9)),
     '^' + re.escape("SSIMLoss: a 7x7 Gaussian window does not fit a 6x9 image with padding 'valid'")),
    ('MSSSIMLoss-valid-window', lambda: MSSSIMLoss()(img(1, 1, 32, 33), img(1, 1, 32, 33)),
     '^' + re.escape("MSSSIMLoss: a 33x33 Gaussian window does not fit a 32x33 image with padding 'valid'")),
    ('MSSSIMLoss-valid-window-sigmas', lambda: MSSSIMLoss(sigmas=[2.0, 1.0])(img(1, 1, 9, 8), img(1, 1, 9, 8)),
     '^' + re.escape("MSSSIMLoss: a 9x9 Gaussian window does not fit a 9x8 image with padding 'valid'")),
    ('MSSSIMLoss-reflect-small', lambda: MSSSIMLoss(padding='reflect')(img(1, 1, 16, 17), img(1, 1, 16, 17)),
     '^' + re.escape("MSSSIMLoss: padding 'reflect' by 16 needs images larger than 16 px, got 16x17") + '$'),
    ('MSSSIML1Loss-valid-window', lambda: MSSSIML1Loss(sigmas=[1.0, 3.0])(img(1, 1, 13, 12), img(1, 1, 13, 12)),
     '^' + re.escape("MSSSIML1Loss: a 13x13 Gaussian window does not fit a 13x12 image with padding 'valid'")),
    ('MSSSIML1Loss-reflect-small', lambda: MSSSIML1Loss(padding='reflect')(img(1, 1, 17, 16), img(1, 1, 17, 16)),
     '^' + re.escape("MSSSIML1Loss: padding 'reflect' by 16 needs images larger than 16 px, got 17x16") + '$'),
    ('SSIMLoss-reflect-small', lambda: SSIMLoss(sigma=0.5, padding='reflect')(img(1, 1, 2, 3), img(1, 1, 2, 3)),
     '^' + re.escape("SSIMLoss: padding 'reflect' by 2 needs images larger than 2 px, got 2x3") + '$'),
    ('gaussian_filter-reflect-small', lambda: gaussian_filter(img(1, 1, 5, 4), [1.0], 4, 'reflect'),
     '^' + re.escape("gaussian_filter: padding 'reflect' by 4 needs images larger than 4 px, got 5x4") + '$'),
    ('gaussian_filter-valid-window', lambda: gaussian_filter(img(1, 1, 8, 9), [1.0], 4, 'valid'),
     '^' + re.escape("gaussian_filter: a 9x9 Gaussian window does not fit a 8x9 image with padding 'valid'")),
    # MSSSIMJudge
    ('MSSSIMJudge-small', lambda: MSSSIMJudge()(img(1, 1, 10, 11), img(1, 1, 10, 11)),
     '^' + re.escape('TLW judge ms_ssim: images of (10, 11) are smaller than one 11x11 window; use larger gt_size or '
                     'judge type l1') + '$'),
]


@pytest.mark.parametrize('call, message', [case[1:] for case in TENSOR_ERRORS], ids=[case[0] for case in TENSOR_ERRORS])
def test_tensor_error_names_owner_tensor_and_expectation(call, message):
    with pytest.raises(ValueError, match=message) as info:
        call()
    assert type(info.value) is ValueError  # a bad tensor is not a bad option
    assert '\n' not in str(info.value)


TENSORS_ACCEPTED = [
    ('SPLoss-4d', lambda: SPLoss()(img(1, 1, 1, 1), img(1, 1, 1, 1))),
    ('SPLoss-5d', lambda: SPLoss()(img(1, 1, 1, 2, 2), img(1, 1, 1, 2, 2))),
    ('SPLoss-float64', lambda: SPLoss()(img(1, 1, 2, 2).double(), img(1, 1, 2, 2).double())),
    ('SPLoss-weight-broadcasts', lambda: SPLoss()(img(1, 1, 2, 3), img(1, 1, 2, 3), weight=torch.ones(3))),
    ('SPLoss-weight-full', lambda: SPLoss()(img(1, 1, 2, 3), img(1, 1, 2, 3), weight=torch.ones(1, 1, 2, 3))),
    ('SSIMLoss-weight-same-size', lambda: SSIMLoss(sigma=0.5, padding='reflect')(
        img(1, 1, 3, 3), img(1, 1, 3, 3), weight=torch.ones(1, 1, 3, 3))),
    ('SPLoss-finite-none', lambda: SPLoss(reduction='none')(img(1, 1, 2, 2), img(1, 1, 2, 2))),
    ('AsymmetricLoss-1-channel', lambda: AsymmetricLoss()(img(1, 1, 2, 2), img(1, 1, 2, 2))),
    ('AsymmetricLoss-3-channels', lambda: AsymmetricLoss()(img(1, 3, 2, 2), img(1, 3, 2, 2))),
    ('AsymmetricLoss-2-channels-per-channel', lambda: AsymmetricLoss(per_channel=True)(img(1, 2, 2, 2),
                                                                                       img(1, 2, 2, 2))),
    ('EdgeLoss', lambda: EdgeLoss()(img(1, 1, 4, 4), img(1, 1, 4, 4))),
    ('FineGrainedDynamicLoss-2-bins', lambda: FineGrainedDynamicLoss()(img(1, 1, 2, 2), img(1, 1, 2, 2),
                                                                       logits=torch.zeros(1, 2, 1, 2, 2))),
    *[(f'TLWLoss-wc-1e-9-{form}', lambda form=form: TLWLoss(form=form)(
        img(1, 1, 2, 2), img(1, 1, 2, 2), weights=torch.ones(2, 1, 1, 2, 2), wc=torch.tensor([[1.0], [1e-9]])))
      for form in ('weighted_sum', 'log_posterior')],
    ('UDLLoss-s-one-channel', lambda: UDLLoss()(img(1, 3, 2, 2), img(1, 3, 2, 2), s=torch.zeros(1, 1, 2, 2))),
    ('MSSSIMLoss-pyramid-161', lambda: MSSSIMLoss(mode='pyramid')(img(1, 1, 161, 161), img(1, 1, 161, 161))),
    ('SSIMLoss-valid-window-fits', lambda: SSIMLoss(sigma=0.5)(img(1, 1, 5, 5), img(1, 1, 5, 5))),
    ('SSIMLoss-reflect-3', lambda: SSIMLoss(sigma=0.5, padding='reflect')(img(1, 1, 3, 3), img(1, 1, 3, 3))),
    ('SSIMLoss-zero-small', lambda: SSIMLoss(sigma=0.5, padding='zero')(img(1, 1, 1, 1), img(1, 1, 1, 1))),
    ('MSSSIMJudge-11', lambda: MSSSIMJudge()(img(1, 1, 11, 11), img(1, 1, 11, 11))),
]


@pytest.mark.parametrize('call', [case[1] for case in TENSORS_ACCEPTED], ids=[case[0] for case in TENSORS_ACCEPTED])
def test_tensors_at_the_bound_are_accepted(call):
    assert torch.isfinite(call()).all()


# ---------------------------------------------------------------------------------------------------------
# the LPIPS judge's backbone file (found without building the network)

def test_lpips_judge_missing_weights_path_names_the_option(tmp_path):
    missing = tmp_path / 'vgg.pth'
    with pytest.raises(OptionError, match='^' + re.escape(f"TLW judge lpips: the VGG16 backbone weights '{missing}' "
                                                          'do not exist. Download https://download.pytorch.org/models/'
                                                          'vgg16-397923af.pth on a machine with internet and put it '
                                                          'in train.tlw.judge.weights_path, or set '
                                                          'train.tlw.judge.weights_path to the file; or use a '
                                                          'weight-free judge (train.tlw.judge.type: ms_ssim).') + '$'):
        LPIPSJudge.find_weights(str(missing))
    missing.write_bytes(b'')
    assert LPIPSJudge.find_weights(str(missing)) == str(missing)


def test_lpips_judge_missing_hub_file_names_the_cache(tmp_path, monkeypatch):
    monkeypatch.setattr(torch.hub, 'get_dir', lambda: str(tmp_path))
    cache = tmp_path / 'checkpoints'
    with pytest.raises(OptionError, match='^' + re.escape(f"TLW judge lpips: the VGG16 backbone weights "
                                                          f"'{cache / 'vgg16-397923af.pth'}' do not exist.") +
                       '.*' + re.escape(f'put it in the torch hub cache ({cache}), where torchvision looks, or set '
                                        'train.tlw.judge.weights_path to the file;')):
        LPIPSJudge.find_weights(None)
    cache.mkdir()
    (cache / 'vgg16-397923af.pth').write_bytes(b'')
    assert LPIPSJudge.find_weights(None) == str(cache / 'vgg16-397923af.pth')
