"""Every error of the data code (``losses_plugin/data/*.py``) names the option path (or the class), the
option and what was expected, in one line; each bound sits where the message says."""
import re

import cv2
import numpy as np
import pytest

from losses_plugin.checks import OptionError
from losses_plugin.data.degradations import bayer_noise_demosaic, build_degradations
from losses_plugin.data.deterministic_sampling import ResumableEnlargedSampler
from losses_plugin.data.synthetic_degradation_dataset import SyntheticDegradationDataset

W = 'datasets.train.degradations'


def exact(message):
    return '^' + re.escape(message) + '$'


# (id, specs, message): build_degradations(specs, W) refuses them
SPEC_ERRORS = [
    ('list-none', None, exact(f'{W}: expected a non-empty list of {{type: ..., options}}, got None')),
    ('list-empty', [], exact(f'{W}: expected a non-empty list of {{type: ..., options}}, got []')),
    ('list-dict', {'type': 'jpeg'},
     exact(f"{W}: expected a non-empty list of {{type: ..., options}}, got {{'type': 'jpeg'}}")),
    ('type-unknown', [{'type': 'jpeg'}, {'type': 'blur'}],
     exact(f"{W}[1].type: 'blur' is not a degradation; known: gaussian_noise, bayer_noise_demosaic, jpeg")),
    ('type-missing', [{'sigma': 25}],
     exact(f"{W}[0].type: 'None' is not a degradation; known: gaussian_noise, bayer_noise_demosaic, jpeg")),
    ('gaussian_noise-unknown-option', [{'type': 'gaussian_noise', 'sigma': 25, 'mean': 0}],
     f"^{re.escape(f'{W}[0] (gaussian_noise): ')}.*unexpected keyword argument 'mean'$"),
    ('jpeg-unknown-option', [{'type': 'jpeg', 'level': 30}],
     f"^{re.escape(f'{W}[0] (jpeg): ')}.*unexpected keyword argument 'level'$"),
    ('bayer-unknown-option', [{'type': 'bayer_noise_demosaic', 'noise': 0.1}],
     f"^{re.escape(f'{W}[0] (bayer_noise_demosaic): ')}.*unexpected keyword argument 'noise'$"),
    # gaussian_noise
    ('gaussian_noise-neither', [{'type': 'gaussian_noise'}],
     exact(f'{W}[0]: give exactly one of sigma and sigma_range')),
    ('gaussian_noise-both', [{'type': 'gaussian_noise', 'sigma': 25, 'sigma_range': [0, 50]}],
     exact(f'{W}[0]: give exactly one of sigma and sigma_range')),
    ('gaussian_noise-sigma-negative', [{'type': 'gaussian_noise', 'sigma': -1e-9}],
     exact(f'{W}[0].sigma: expected a number >= 0 (0-255 scale), got -1e-09')),
    ('gaussian_noise-sigma-str', [{'type': 'gaussian_noise', 'sigma': '25'}],
     exact(f"{W}[0].sigma: expected a number >= 0 (0-255 scale), got '25'")),
    ('gaussian_noise-sigma_range-low-negative', [{'type': 'gaussian_noise', 'sigma_range': [-1e-9, 50]}],
     exact(f'{W}[0].sigma_range: expected [low, high] with 0 <= low <= high, got [-1e-09, 50]')),
    ('gaussian_noise-sigma_range-reversed', [{'type': 'gaussian_noise', 'sigma_range': [50, 49.9]}],
     exact(f'{W}[0].sigma_range: expected [low, high] with 0 <= low <= high, got [50, 49.9]')),
    ('gaussian_noise-sigma_range-three', [{'type': 'gaussian_noise', 'sigma_range': [0, 25, 50]}],
     exact(f'{W}[0].sigma_range: expected [low, high] with 0 <= low <= high, got [0, 25, 50]')),
    ('gaussian_noise-sigma_range-number', [{'type': 'gaussian_noise', 'sigma_range': 25}],
     exact(f'{W}[0].sigma_range: expected [low, high] with 0 <= low <= high, got 25')),
    ('gaussian_noise-sigma-bool', [{'type': 'gaussian_noise', 'sigma': True}],
     exact(f'{W}[0].sigma: expected a number >= 0 (0-255 scale), got True')),
    ('gaussian_noise-sigma_range-str', [{'type': 'gaussian_noise', 'sigma_range': ['0', '50']}],
     exact(f"{W}[0].sigma_range: expected [low, high] with 0 <= low <= high, got ['0', '50']")),
    ('gaussian_noise-sigma_range-bool', [{'type': 'gaussian_noise', 'sigma_range': [False, 50]}],
     exact(f'{W}[0].sigma_range: expected [low, high] with 0 <= low <= high, got [False, 50]')),
    ('gaussian_noise-clip', [{'type': 'gaussian_noise', 'sigma': 25, 'clip': 'yes'}],
     exact(f"{W}[0].clip: expected true or false, got 'yes'")),
    ('bayer-clip', [{'type': 'bayer_noise_demosaic', 'clip': 1}], exact(f'{W}[0].clip: expected true or false, got 1')),
    # bayer_noise_demosaic
    ('bayer-pattern', [{'type': 'bayer_noise_demosaic', 'pattern': 'rgbg'}],
     exact(f"{W}[0].pattern: expected one of rggb, bggr, grbg, gbrg, got 'rgbg'")),
    *[(f'bayer-{name}-negative', [{'type': 'bayer_noise_demosaic', name: -1e-9}],
       exact(f'{W}[0].{name}: expected a number >= 0, got -1e-09')) for name in ('noise_a', 'noise_b')],
    *[(f'bayer-{name}-str', [{'type': 'bayer_noise_demosaic', name: '0.1'}],
       exact(f"{W}[0].{name}: expected a number >= 0, got '0.1'")) for name in ('noise_a', 'noise_b')],
    # jpeg
    ('jpeg-grid_shift', [{'type': 'jpeg', 'grid_shift': 1}],
     exact(f'{W}[0].grid_shift: expected true or false, got 1')),
    *[(f'jpeg-quality-{quality!r}', [{'type': 'jpeg', 'quality': quality}],
       exact(f'{W}[0].quality: expected an integer in [0, 100] or [low, high], got {quality!r}'))
      for quality in (-1, 101, 25.0, '25', True, [10, 101], [-1, 10], [10, 20, 30], [], [30], [20, 10])],
]


@pytest.mark.parametrize('specs, message', [case[1:] for case in SPEC_ERRORS], ids=[case[0] for case in SPEC_ERRORS])
def test_degradation_option_errors(specs, message):
    with pytest.raises(OptionError, match=message) as info:
        build_degradations(specs, W)
    assert '\n' not in str(info.value)


def test_degradations_default_where():
    with pytest.raises(OptionError, match=exact('degradations: expected a non-empty list of {type: ..., options}, '
                                                'got []')):
        build_degradations([])


ACCEPTED = {
    'gaussian_noise-sigma-0': [{'type': 'gaussian_noise', 'sigma': 0}],
    'gaussian_noise-sigma_range-equal': [{'type': 'gaussian_noise', 'sigma_range': [0, 0]}],
    'gaussian_noise-sigma_range': [{'type': 'gaussian_noise', 'sigma_range': [0, 50], 'clip': True}],
    'bayer-zero-noise': [{'type': 'bayer_noise_demosaic', 'noise_a': 0, 'noise_b': 0.0, 'clip': False}],
    'bayer-patterns': [{'type': 'bayer_noise_demosaic', 'pattern': p} for p in ('rggb', 'bggr', 'grbg', 'gbrg')],
    'jpeg-quality-0': [{'type': 'jpeg', 'quality': 0}],
    'jpeg-quality-100': [{'type': 'jpeg', 'quality': 100, 'grid_shift': True}],
    'jpeg-quality-range': [{'type': 'jpeg', 'quality': [0, 100], 'grid_shift': False}],
    'jpeg-quality-range-of-one': [{'type': 'jpeg', 'quality': [30, 30]}],
}


@pytest.mark.parametrize('specs', ACCEPTED.values(), ids=ACCEPTED.keys())
def test_values_at_the_bounds_are_accepted(specs):
    functions = build_degradations(specs, W)
    rng = np.random.default_rng(0)
    for function in functions:
        assert function(np.full((8, 8, 3), 0.5, np.float32), rng).shape == (8, 8, 3)


@pytest.mark.parametrize('channels', (1, 4))
def test_bayer_needs_three_channels(channels):
    message = exact(f'bayer_noise_demosaic needs 3-channel images, got {channels} channels')
    with pytest.raises(ValueError, match=message):
        bayer_noise_demosaic(np.zeros((4, 4, channels), np.float32), np.random.default_rng(0))


# ---------------------------------------------------------------------------------------------------------
# ResumableEnlargedSampler

def test_sampler_skip_must_lie_in_the_epoch():
    sampler = ResumableEnlargedSampler(list(range(6)), num_replicas=2, rank=0)
    assert sampler.num_samples == 3
    for skip in (-1, 4):
        with pytest.raises(ValueError, match=exact(f'skip must lie in [0, 3], got {skip}')):
            sampler.set_epoch(1, skip)
    for skip in (0, 3):
        sampler.set_epoch(1, skip)
        assert len(sampler) == 3 - skip


# ---------------------------------------------------------------------------------------------------------
# SyntheticDegradationDataset

@pytest.fixture
def gt_folder(tmp_path):
    folder = tmp_path / 'gt'
    folder.mkdir()
    cv2.imwrite(str(folder / 'a.png'), np.full((6, 8, 3), 128, np.uint8))
    return folder


def options(folder, **changes):
    return dict({'name': 'train', 'phase': 'train', 'io_backend': {'type': 'disk'}, 'dataroot_gt': str(folder),
                 'degradations': [{'type': 'gaussian_noise', 'sigma': 25}], 'gt_size': 6}, **changes)


def test_dataset_color_names_the_option(gt_folder):
    with pytest.raises(OptionError, match=exact("datasets.train.color: expected one of ('rgb', 'y'), got 'ycbcr'")):
        SyntheticDegradationDataset(options(gt_folder, color='ycbcr'))


def test_dataset_degradations_name_the_option(gt_folder):
    with pytest.raises(OptionError, match=exact('datasets.val.degradations: expected a non-empty list of '
                                                '{type: ..., options}, got None')):
        SyntheticDegradationDataset(options(gt_folder, name='val', degradations=None))
    with pytest.raises(OptionError, match=exact("datasets.train.degradations[0].sigma: expected a number >= 0 "
                                                "(0-255 scale), got -1")):
        SyntheticDegradationDataset(options(gt_folder, degradations=[{'type': 'gaussian_noise', 'sigma': -1}]))


def test_dataset_gt_size_larger_than_the_image(gt_folder):
    dataset = SyntheticDegradationDataset(options(gt_folder, gt_size=7))
    with pytest.raises(ValueError, match=exact(f"{gt_folder / 'a.png'} (6x8) is smaller than gt_size 7")):
        dataset[0]


@pytest.mark.parametrize('color', ('rgb', 'y'))
def test_dataset_gt_size_of_the_image_and_both_colors_are_accepted(gt_folder, color):
    sample = SyntheticDegradationDataset(options(gt_folder, gt_size=6, color=color))[0]
    assert sample['gt'].shape == ((3 if color == 'rgb' else 1), 6, 6)
