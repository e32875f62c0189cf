"""Every error of the metrics (``losses_plugin/metrics/*.py``) names the metric, the option or image and
what was expected, in one line. No weight file is read: each error comes before any network is built."""
import re

import numpy as np
import pytest
import torch

from losses_plugin.checks import OptionError
from losses_plugin.metrics import perceptual_metric
from losses_plugin.metrics.perceptual_metric import (BACKBONE_URLS, DISTS_URL, calculate_dists, calculate_lpips,
                                                     find_weights, metric_device)
from losses_plugin.metrics.rmse_metric import calculate_rmse
from losses_plugin.metrics.zhao_metric import (calculate_fsim, calculate_gmsd, calculate_iw_ssim, calculate_l1_1000,
                                               calculate_l2_1000, calculate_ms_ssim)

VGG_URL = 'https://download.pytorch.org/models/vgg16-397923af.pth'
ALEX_URL = 'https://download.pytorch.org/models/alexnet-owt-7be5be79.pth'
PAIR_METRICS = (calculate_rmse, calculate_ms_ssim, calculate_iw_ssim, calculate_gmsd, calculate_fsim,
                calculate_l1_1000, calculate_l2_1000)


def image(h=4, w=4, c=3):
    return np.random.RandomState(0).randint(0, 256, (h, w, c)).astype(np.uint8)


@pytest.fixture
def backbone(tmp_path):
    """A file where the backbone's weights would be: enough to get past the file checks."""
    path = tmp_path / 'backbone.pth'
    path.write_bytes(b'')
    return str(path)


@pytest.fixture
def hub(tmp_path, monkeypatch):
    """An empty torch hub cache."""
    monkeypatch.setattr(torch.hub, 'get_dir', lambda: str(tmp_path / 'hub'))
    return tmp_path / 'hub' / 'checkpoints'


def test_the_urls_are_the_libraries_files():
    assert BACKBONE_URLS == {'vgg': VGG_URL, 'alex': ALEX_URL}
    assert DISTS_URL.endswith('/dists_weights.pt')


# ---------------------------------------------------------------------------------------------------------
# image_pair.prepared_pair: every metric names itself

@pytest.mark.parametrize('metric', PAIR_METRICS, ids=[m.__name__ for m in PAIR_METRICS])
def test_shapes_differ_names_the_metric(metric):
    with pytest.raises(ValueError, match='^' + re.escape(f'{metric.__name__}: image shapes differ: (4, 4, 3) and '
                                                         '(4, 5, 3)') + '$'):
        metric(image(4, 4), image(4, 5), crop_border=0)


@pytest.mark.parametrize('metric', (calculate_lpips, calculate_dists), ids=('calculate_lpips', 'calculate_dists'))
def test_shapes_differ_names_the_perceptual_metric(metric, backbone):
    with pytest.raises(ValueError, match='^' + re.escape(f'{metric.__name__}: image shapes differ: (4, 4, 3) and '
                                                         '(4, 4, 1)') + '$'):
        metric(image(4, 4), image(4, 4, 1), crop_border=0, backbone_path=backbone, weights_path=backbone,
               device='cpu')


def test_same_shapes_are_accepted():
    assert calculate_rmse(image(), image(), crop_border=0) == 0
    assert calculate_rmse(image(2, 3), image(2, 3), crop_border=0, input_order='CHW') == 0


# ---------------------------------------------------------------------------------------------------------
# zhao_metric

def test_fsim_chromatic_on_y_channel_says_to_use_colour():
    with pytest.raises(OptionError, match='^' + re.escape('calculate_fsim: chromatic (FSIMc) needs RGB images; set '
                                                          'test_y_channel: false') + '$'):
        calculate_fsim(image(16, 16), image(16, 16), crop_border=0, test_y_channel=True, chromatic=True)


def test_fsim_chromatic_on_colour_and_plain_on_y_are_accepted():
    assert calculate_fsim(image(16, 16), image(16, 16), crop_border=0, chromatic=True) == pytest.approx(1)
    assert calculate_fsim(image(16, 16), image(16, 16), crop_border=0, test_y_channel=True) == pytest.approx(1)


# ---------------------------------------------------------------------------------------------------------
# perceptual_metric: options, weight files, device

def test_lpips_net_must_be_a_known_backbone():
    with pytest.raises(OptionError, match='^' + re.escape("calculate_lpips: option 'net' must be one of 'vgg', 'alex', "
                                                          "got 'squeeze'") + '$'):
        calculate_lpips(image(), image(), crop_border=0, net='squeeze')


@pytest.mark.parametrize('metric, net, url, file_name', [
    (calculate_lpips, 'vgg', VGG_URL, 'vgg16-397923af.pth'),
    (calculate_lpips, 'alex', ALEX_URL, 'alexnet-owt-7be5be79.pth'),
    (calculate_dists, None, VGG_URL, 'vgg16-397923af.pth'),
], ids=('calculate_lpips-vgg', 'calculate_lpips-alex', 'calculate_dists'))
def test_missing_backbone_path_names_metric_option_and_url(metric, net, url, file_name, tmp_path):
    missing = tmp_path / 'nowhere.pth'
    kwargs = {'net': net} if net else {}
    with pytest.raises(OptionError, match='^' + re.escape(
            f"{metric.__name__}: backbone_path '{missing}' does not exist; download {url} on a machine with internet "
            f"and put it in the torch hub cache, or set backbone_path: /path/to/{file_name} in this metric's "
            'val.metrics options') + '$'):
        metric(image(), image(), crop_border=0, backbone_path=str(missing), **kwargs)


@pytest.mark.parametrize('metric', (calculate_lpips, calculate_dists), ids=('calculate_lpips', 'calculate_dists'))
def test_backbone_missing_from_the_hub_cache_names_the_cache(metric, hub):
    with pytest.raises(OptionError, match='^' + re.escape(
            f'{metric.__name__}: vgg16-397923af.pth is not in the torch hub cache ({hub}); download {VGG_URL} on a '
            'machine with internet and put it in the torch hub cache, or set backbone_path: '
            "/path/to/vgg16-397923af.pth in this metric's val.metrics options") + '$'):
        metric(image(), image(), crop_border=0)


def test_dists_missing_weights_path_names_the_option(backbone, tmp_path):
    missing = tmp_path / 'dists.pt'
    with pytest.raises(OptionError, match='^' + re.escape(
            f"calculate_dists: weights_path '{missing}' does not exist; download {DISTS_URL} on a machine with "
            "internet and put it in the torch hub cache, or set weights_path: /path/to/dists_weights.pt in this "
            "metric's val.metrics options") + '$'):
        calculate_dists(image(), image(), crop_border=0, backbone_path=backbone, weights_path=str(missing))


def test_dists_weights_missing_from_the_hub_cache(backbone, hub):
    with pytest.raises(OptionError, match='^' + re.escape(f'calculate_dists: dists_weights.pt is not in the torch hub '
                                                          f'cache ({hub}); download {DISTS_URL}')):
        calculate_dists(image(), image(), crop_border=0, backbone_path=backbone)


def test_lpips_missing_weights_path_names_the_option(backbone, tmp_path):
    missing = tmp_path / 'linear.pth'
    with pytest.raises(OptionError, match='^' + re.escape(
            f"calculate_lpips: weights_path: '{missing}' does not exist (relative to ") + '.*' + re.escape(
            '); leave it out for the linear layers inside the lpips package') + '$'):
        calculate_lpips(image(), image(), crop_border=0, backbone_path=backbone, weights_path=str(missing))


def test_find_weights_accepts_a_file_and_the_hub_copy(backbone, hub):
    assert find_weights('m', 'backbone_path', backbone, VGG_URL) == backbone
    hub.mkdir(parents=True)
    (hub / 'vgg16-397923af.pth').write_bytes(b'')
    assert find_weights('m', 'backbone_path', None, VGG_URL) == str(hub / 'vgg16-397923af.pth')


@pytest.mark.parametrize('metric', (calculate_lpips, calculate_dists), ids=('calculate_lpips', 'calculate_dists'))
def test_device_must_be_known(metric, backbone):
    with pytest.raises(OptionError, match='^' + re.escape("perceptual metrics: option 'device' must be one of 'auto', "
                                                          "'cpu', 'cuda', got 'gpu'") + '$'):
        metric(image(), image(), crop_border=0, backbone_path=backbone, weights_path=backbone, device='gpu')


@pytest.mark.skipif(torch.cuda.is_available(), reason='a CUDA device is there')
def test_device_cuda_without_cuda():
    with pytest.raises(OptionError, match='^' + re.escape('perceptual metrics: device: cuda, but torch sees no CUDA '
                                                          'device; use device: auto or cpu') + '$'):
        metric_device('cuda')


def test_devices_accepted():
    assert metric_device('cpu') == 'cpu'
    assert metric_device('auto') == ('cpu' if not torch.cuda.is_available() else f'cuda:{torch.cuda.current_device()}')


@pytest.mark.parametrize('metric', (calculate_lpips, calculate_dists), ids=('calculate_lpips', 'calculate_dists'))
def test_y_channel_is_refused(metric, backbone):
    with pytest.raises(OptionError, match='^' + re.escape(f'{metric.__name__} compares colour images; set '
                                                          'test_y_channel: false') + '$'):
        metric(image(), image(), crop_border=0, test_y_channel=True, backbone_path=backbone, weights_path=backbone,
               device='cpu')


def test_rgb_pair_accepts_colour_and_grey():
    x, y = perceptual_metric.rgb_pair(image(), image(), 0, 'HWC', False, 'm', 'cpu')
    assert x.shape == y.shape == (1, 3, 4, 4)
    x, y = perceptual_metric.rgb_pair(image(c=1), image(c=1), 0, 'HWC', False, 'm', 'cpu')
    assert x.shape == (1, 3, 4, 4)
