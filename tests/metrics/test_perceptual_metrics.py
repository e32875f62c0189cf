"""LPIPS (lpips package) and DISTS (piq) as BasicSR metrics: the same numbers as the libraries' own
modules built with the same weight files, found at a path option or in the torch hub cache; one
OptionError line when a file is missing; BGR images scored as RGB. No pretrained weights exist here,
so every weight file is random (the numbers mean nothing; the plumbing is what is tested)."""
import functools
import os
import pickle
import warnings

import lpips
import numpy as np
import piq
import pytest
import torch
import torchvision
from basicsr.metrics import calculate_metric
from conftest import run_cli, tiny_options, training_log, write_options

from losses_plugin.checks import OptionError
from losses_plugin.metrics import perceptual_metric
from losses_plugin.strict_options import option_key_problems

VGG16, ALEXNET, DISTS = 'vgg16-397923af.pth', 'alexnet-owt-7be5be79.pth', 'dists_weights.pt'


def random_torchvision_weights(model_fn, seed):
    """A file torchvision loads as ``model_fn``'s ImageNet weights: random convolutions; the (unused, large)
    classifier as zeros broadcast from one stored number, so the file stays small."""
    generator = torch.Generator().manual_seed(seed)
    with torch.device('meta'):
        shapes = {k: v.shape for k, v in model_fn().state_dict().items()}
    state = {}
    for key, shape in shapes.items():
        if key.startswith('features.') and key.endswith('.weight'):
            state[key] = torch.randn(shape, generator=generator) * (2 / shape[1:].numel()) ** 0.5
        elif key.startswith('features.'):
            state[key] = 0.01 * torch.randn(shape, generator=generator)
        else:
            state[key] = torch.zeros(1).expand(shape)
    return state


def random_dists_weights(seed):
    """alpha and beta over VGG16's 3 + 1472 channels, positive and summing to 1 as piq's do."""
    weights = torch.rand(2, 1, 1475, 1, 1, generator=torch.Generator().manual_seed(seed))
    weights /= weights.sum()
    return {'alpha': weights[0], 'beta': weights[1]}


@pytest.fixture(scope='module')
def torch_home(tmp_path_factory):
    """A TORCH_HOME whose hub cache holds random VGG16, AlexNet and DISTS weights, as torchvision and piq name them."""
    home = tmp_path_factory.mktemp('torch_home')
    checkpoints = home / 'hub' / 'checkpoints'
    checkpoints.mkdir(parents=True)
    torch.save(random_torchvision_weights(torchvision.models.vgg16, 0), checkpoints / VGG16)
    torch.save(random_torchvision_weights(torchvision.models.alexnet, 1), checkpoints / ALEXNET)
    torch.save(random_dists_weights(2), checkpoints / DISTS)
    return home


@pytest.fixture
def hub_cache(torch_home, monkeypatch):
    monkeypatch.setenv('TORCH_HOME', str(torch_home))
    return torch_home / 'hub' / 'checkpoints'


@pytest.fixture
def empty_hub(tmp_path, monkeypatch):
    monkeypatch.setenv('TORCH_HOME', str(tmp_path / 'empty_torch_home'))
    return tmp_path / 'empty_torch_home' / 'hub' / 'checkpoints'


@pytest.fixture(scope='module')
def images():
    """A colour BGR uint8 image (red, green and blue vary differently) and two noisier copies."""
    yy, xx = np.mgrid[0:48, 0:64] / 64.
    rgb = np.stack([np.sin(6 * xx) * 0.4 + 0.5, yy, 0.5 + 0.4 * np.cos(9 * xx * yy)], axis=2)
    rgb[10:30, 20:40] = (0.9, 0.2, 0.1)
    gt = np.round(rgb[..., ::-1] * 255).astype(np.uint8)
    rng = np.random.default_rng(0)
    mild = np.clip(gt + rng.normal(0, 6, gt.shape), 0, 255).astype(np.uint8)
    strong = np.clip(gt + rng.normal(0, 30, gt.shape), 0, 255).astype(np.uint8)
    return gt, mild, strong


def metric(name, img, img2, **options):
    return calculate_metric({'img': img, 'img2': img2}, {'type': name, 'crop_border': 0, 'device': 'cpu', **options})


def as_rgb_tensor(bgr):
    return torch.from_numpy(np.ascontiguousarray(bgr[..., ::-1] / 255.)).permute(2, 0, 1)[None].float()


@pytest.fixture(scope='module')
def library(torch_home):
    """The libraries' own modules, which load their weights from the hub cache themselves: lpips (torchvision's
    backbone, the package's linear layers) and piq's DISTS; each maps (x, y) RGB tensors to a number."""
    saved = os.environ.get('TORCH_HOME')
    os.environ['TORCH_HOME'] = str(torch_home)
    try:
        with warnings.catch_warnings():  # both still pass torchvision's deprecated `pretrained=`
            warnings.simplefilter('ignore', UserWarning)
            modules = {'vgg': lpips.LPIPS(net='vgg', verbose=False), 'alex': lpips.LPIPS(net='alex', verbose=False),
                       'dists': piq.DISTS(reduction='none')}
    finally:
        if saved is None:
            del os.environ['TORCH_HOME']
        else:
            os.environ['TORCH_HOME'] = saved
    calls = {net: functools.partial(modules[net], normalize=True) for net in ('vgg', 'alex')}
    calls['dists'] = modules['dists']

    def call(name, img, img2):
        with torch.no_grad():
            return calls[name](as_rgb_tensor(img), as_rgb_tensor(img2)).item()
    return call


@pytest.mark.parametrize('net, file', [('vgg', VGG16), ('alex', ALEXNET)])
def test_lpips_equals_lpips_package_by_path_and_from_hub_cache(net, file, images, library, hub_cache, tmp_path,
                                                              monkeypatch):
    _, mild, strong = images
    expected = library(net, mild, strong)
    assert metric('calculate_lpips', mild, strong, net=net) == pytest.approx(expected, rel=1e-5)
    # the path option, with nothing in the hub cache
    path = tmp_path / 'elsewhere' / file
    path.parent.mkdir()
    path.write_bytes((hub_cache / file).read_bytes())
    monkeypatch.setenv('TORCH_HOME', str(tmp_path / 'empty'))
    by_path = metric('calculate_lpips', mild, strong, net=net, backbone_path=str(path))
    assert by_path == pytest.approx(expected, rel=1e-5)
    assert expected > 0


def test_dists_equals_piq_by_path_and_from_hub_cache(images, library, hub_cache, tmp_path, monkeypatch):
    _, mild, strong = images
    expected = library('dists', mild, strong)
    assert metric('calculate_dists', mild, strong) == pytest.approx(expected, rel=1e-5, abs=1e-6)
    for name in (VGG16, DISTS):
        (tmp_path / name).write_bytes((hub_cache / name).read_bytes())
    monkeypatch.setenv('TORCH_HOME', str(tmp_path / 'empty'))
    assert metric('calculate_dists', mild, strong, backbone_path=str(tmp_path / VGG16),
                  weights_path=str(tmp_path / DISTS)) == pytest.approx(expected, rel=1e-5, abs=1e-6)
    assert expected > 0


@pytest.mark.parametrize('name, library_name', [('calculate_lpips', 'vgg'), ('calculate_dists', 'dists')])
def test_bgr_images_are_scored_as_rgb(name, library_name, images, library, hub_cache):
    """BasicSR hands BGR images and the networks take RGB; on a colour image the channel order changes the number."""
    gt, mild, _ = images
    rgb, bgr = library(library_name, gt, mild), library(library_name, gt[..., ::-1], mild[..., ::-1])
    assert rgb != pytest.approx(bgr, rel=1e-3)
    assert metric(name, gt, mild) == pytest.approx(rgb, rel=1e-5, abs=1e-6)  # DISTS is 1 - similarity: float32 eps


@pytest.mark.parametrize('name', ['calculate_lpips', 'calculate_dists'])
def test_identical_scores_zero_and_more_noise_scores_higher(name, images, hub_cache):
    gt, mild, strong = images
    assert metric(name, gt, gt) == pytest.approx(0, abs=1e-5)
    assert 0 < metric(name, mild, gt) < metric(name, strong, gt)


def test_network_is_built_once_per_options_and_device(images, hub_cache):
    gt, mild, _ = images
    metric('calculate_lpips', gt, mild)
    before = perceptual_metric._built.cache_info()
    for _ in range(3):
        metric('calculate_lpips', gt, mild)
    after = perceptual_metric._built.cache_info()
    assert (after.misses - before.misses, after.hits - before.hits) == (0, 3)


def test_crop_grey_and_chw_images(images, hub_cache):
    gt, mild, _ = images
    cropped = metric('calculate_lpips', gt, mild, crop_border=4)
    assert cropped == pytest.approx(metric('calculate_lpips', gt[4:-4, 4:-4], mild[4:-4, 4:-4]), rel=1e-6)
    chw = metric('calculate_lpips', gt.transpose(2, 0, 1), mild.transpose(2, 0, 1), input_order='CHW')
    assert chw == pytest.approx(metric('calculate_lpips', gt, mild), rel=1e-6)
    grey = metric('calculate_dists', gt[..., 1], mild[..., 1])
    assert grey == pytest.approx(metric('calculate_dists', np.repeat(gt[..., 1:2], 3, 2),
                                        np.repeat(mild[..., 1:2], 3, 2)), rel=1e-6)
    with pytest.raises(OptionError, match='test_y_channel: false'):
        metric('calculate_lpips', gt, mild, test_y_channel=True)


@pytest.mark.parametrize('name, options, file, option', [
    ('calculate_lpips', {}, VGG16, 'backbone_path'),
    ('calculate_lpips', {'net': 'alex'}, ALEXNET, 'backbone_path'),
    ('calculate_dists', {}, VGG16, 'backbone_path'),
])
def test_missing_backbone_is_one_line_naming_file_url_and_option(name, options, file, option, images, empty_hub):
    gt, mild, _ = images
    with pytest.raises(OptionError) as error:
        metric(name, gt, mild, **options)
    assert str(error.value) == (
        f'{name}: {file} is not in the torch hub cache ({empty_hub}); download https://download.pytorch.org/models/'
        f'{file} on a machine with internet and put it in the torch hub cache, or set {option}: /path/to/{file} '
        "in this metric's val.metrics options")


def test_missing_dists_weights_and_missing_paths(images, hub_cache, tmp_path):
    gt, mild, _ = images
    (hub_cache.parent.parent / 'no_dists').mkdir(exist_ok=True)
    with pytest.raises(OptionError, match=r"^calculate_dists: weights_path '/nowhere/dists_weights.pt' does not exist; "
                                          r'download https://github.com/photosynthesis-team/piq/releases/download/'
                                          r'v0.4.1/dists_weights.pt on a machine .* set weights_path: '
                                          r'/path/to/dists_weights.pt in .*options$'):
        metric('calculate_dists', gt, mild, weights_path='/nowhere/dists_weights.pt')
    with pytest.raises(OptionError, match=r"^calculate_lpips: backbone_path '~/nowhere.pth' does not exist; "):
        metric('calculate_lpips', gt, mild, backbone_path='~/nowhere.pth')
    with pytest.raises(OptionError, match='calculate_lpips: weights_path'):
        metric('calculate_lpips', gt, mild, weights_path=str(tmp_path / 'lin.pth'))
    with pytest.raises(OptionError, match="option 'net' must be one of 'vgg', 'alex'"):
        metric('calculate_lpips', gt, mild, net='squeeze')


def test_strict_options_accept_the_metric_options():
    metrics = {'lpips': {'type': 'calculate_lpips', 'crop_border': 4, 'net': 'alex', 'backbone_path': None,
                         'weights_path': None, 'device': 'cpu', 'better': 'lower'},
               'dists': {'type': 'calculate_dists', 'crop_border': 4, 'backbone_path': None, 'weights_path': None,
                         'better': 'lower'}}
    assert option_key_problems({'val': {'metrics': metrics}}) == []
    metrics['dists']['weight_path'] = 'dists_weights.pt'
    assert option_key_problems({'val': {'metrics': metrics}}) == [
        "val.metrics.dists.weight_path is not an option of calculate_dists; did you mean 'weights_path'? (valid: "
        'crop_border, input_order, test_y_channel, backbone_path, weights_path, device, better)']


@pytest.mark.slow
def test_training_run_logs_lpips_and_dists(demo_data, torch_home, tmp_path):
    opt = tiny_options(demo_data, 'perceptual_metrics')
    opt['val']['metrics'].update(
        lpips={'type': 'calculate_lpips', 'crop_border': 4, 'net': 'vgg', 'better': 'lower'},
        dists={'type': 'calculate_dists', 'crop_border': 4, 'better': 'lower'})
    run_cli(['train', '-opt', write_options(opt, tmp_path / 'train.yml')], cwd=tmp_path,
            env={'TORCH_HOME': str(torch_home)})
    log = training_log(tmp_path / 'experiments' / 'perceptual_metrics')
    values = {name: float(log.split(f'# {name}: ')[-1].split()[0]) for name in ('lpips', 'dists')}
    assert all(value > 0 for value in values.values()), values


class NotAWeight:
    """A pickled object in a weight file: torch.load with weights_only refuses to build it."""


@pytest.mark.parametrize('which', ['backbone_path', 'weights_path'])
def test_weight_files_are_read_as_weights_only(which, images, hub_cache, tmp_path):
    """A weight file given by path holding anything beyond tensors is refused before it runs code."""
    gt, mild, _ = images
    paths = {'backbone_path': tmp_path / VGG16, 'weights_path': tmp_path / DISTS}
    for name, path in paths.items():
        state = torch.load(hub_cache / path.name, weights_only=True)
        if name == which:
            state['extra'] = NotAWeight()
        torch.save(state, path)
    with pytest.raises(pickle.UnpicklingError, match='Weights only load failed'):
        metric('calculate_dists', gt, mild, **{name: str(path) for name, path in paths.items()})


def test_lpips_weights_path_is_the_linear_layers_it_scores_with(images, library, hub_cache, tmp_path):
    """``weights_path`` replaces the package's linear layers: doubled layers double the score."""
    _, mild, strong = images
    package = os.path.join(os.path.dirname(lpips.__file__), 'weights', 'v0.1', 'vgg.pth')
    doubled = {key: 2 * value for key, value in torch.load(package, map_location='cpu', weights_only=True).items()}
    torch.save(doubled, tmp_path / 'vgg_doubled.pth')
    expected = library('vgg', mild, strong)
    by_path = metric('calculate_lpips', mild, strong, weights_path=str(tmp_path / 'vgg_doubled.pth'))
    assert by_path == pytest.approx(2 * expected, rel=1e-5)


def test_the_metric_networks_are_frozen_and_build_silently(hub_cache, capsys):
    for kind, files in (('lpips', ('vgg', str(hub_cache / VGG16))),
                        ('dists', (str(hub_cache / VGG16), str(hub_cache / DISTS)))):
        network = perceptual_metric._built.__wrapped__(kind, torch.device('cpu'), *files)
        assert not network.training and not any(p.requires_grad for p in network.parameters()), kind
    assert capsys.readouterr().out == ''  # lpips prints where it loads from unless verbose is false


@pytest.mark.parametrize('name', ['calculate_lpips', 'calculate_dists'])
def test_values_outside_0_255_are_clipped_as_images_are(name, images, hub_cache):
    """Float images a little outside [0, 255] (e.g. a network's raw output) score as their clipped selves."""
    gt, mild, _ = images
    over = mild.astype(np.float64)
    over[:8] = 300.0  # above 255
    over[8:16] = -40.0  # below 0
    clipped = np.clip(over, 0, 255)
    assert metric(name, over, gt) == pytest.approx(metric(name, clipped, gt), rel=1e-6)
