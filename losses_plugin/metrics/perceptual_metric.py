"""LPIPS and DISTS, the perceptual distances of the TLW and SPLoss tables, with BasicSR's metric call.

- LPIPS (Zhang et al. 2018) comes from the ``lpips`` package: its learned linear layers ship inside
  the package (``lpips/weights/v0.1/<net>.pth``); its backbone is torchvision's ImageNet VGG16 or
  AlexNet (``net: vgg|alex``).
- DISTS (Ding et al. 2020) comes from piq (``piq.DISTS``): torchvision's ImageNet VGG16 and piq's
  ``dists_weights.pt`` (the alpha/beta of its structure and texture terms).

Nothing is downloaded. Each file is read from its path option (``backbone_path`` for torchvision's
file, ``weights_path`` for the metric's own weights) or else from the torch hub cache
(``$TORCH_HOME/hub/checkpoints/``, default ``~/.cache/torch/hub/checkpoints/``), where torchvision and piq
keep them; a missing file is one :class:`OptionError` line naming the file, its URL and the option.
Both are distances on RGB images in [0, 1]: 0 for identical images, lower is better (``better: lower``).

The network is built once per (options, device) and kept: validation calls the metric for every image.
It runs on CUDA (the current device, so each DDP rank uses its own) when there is one, unless the
options say ``device: cpu``.
"""
import functools
import os
import warnings

import numpy as np
import piq
import torch
import torchvision
from basicsr.utils.registry import METRIC_REGISTRY
from torch import nn

from losses_plugin.checks import OptionError, check_choice, check_existing_file
from losses_plugin.losses.tlw_judge import LPIPSJudge
from losses_plugin.metrics.image_pair import prepared_pair

BACKBONE_URLS = {  # torchvision's ImageNet weights, as the torch hub caches them
    'vgg': torchvision.models.VGG16_Weights.IMAGENET1K_V1.url,
    'alex': torchvision.models.AlexNet_Weights.IMAGENET1K_V1.url,
}
DISTS_URL = piq.DISTS._weights_url
DEVICES = ('auto', 'cpu', 'cuda')


def find_weights(metric, option, path, url):
    """The file at ``path`` (``~`` expanded), or the torch hub cache's copy of ``url`` when ``path`` is None."""
    file_name = os.path.basename(url)
    found = os.path.expanduser(path) if path else os.path.join(torch.hub.get_dir(), 'checkpoints', file_name)
    if not os.path.isfile(found):
        where = (f"{option} '{path}' does not exist" if path else
                 f'{file_name} is not in the torch hub cache ({os.path.dirname(found)})')
        raise OptionError(f'{metric}: {where}; download {url} on a machine with internet and put it in the torch hub '
                          f"cache, or set {option}: /path/to/{file_name} in this metric's val.metrics options")
    return found


def metric_device(device):
    """``auto``: the current CUDA device when there is one, else the CPU."""
    check_choice('perceptual metrics', 'device', device, DEVICES)
    if device == 'cpu' or (device == 'auto' and not torch.cuda.is_available()):
        return 'cpu'
    if not torch.cuda.is_available():
        raise OptionError('perceptual metrics: device: cuda, but torch sees no CUDA device; use device: auto or cpu')
    return f'cuda:{torch.cuda.current_device()}'


def rgb_pair(img, img2, crop_border, input_order, test_y_channel, metric, device):
    """BasicSR's BGR (or grey) images in [0, 255] -> two (1, 3, H, W) float32 RGB tensors in [0, 1] on ``device``."""
    if test_y_channel:
        raise OptionError(f'{metric} compares colour images; set test_y_channel: false')
    pair = []
    for image in prepared_pair(img, img2, crop_border, input_order, False, metric):
        # both networks take RGB (ImageNet order); a grey image is the same grey in all three channels
        image = image[..., ::-1] if image.shape[2] == 3 else np.repeat(image, 3, axis=2)
        tensor = torch.from_numpy(np.ascontiguousarray(image / 255.)).permute(2, 0, 1)[None]
        pair.append(tensor.to(device=device, dtype=torch.float32).clamp(0, 1))
    return pair


class LPIPSMetric(nn.Module):
    """``lpips.LPIPS`` with the package's linear layers and torchvision's backbone read from a file.

    Args:
        net (str): ``vgg`` or ``alex``, the backbone.
        backbone_path (str): torchvision's ``vgg16-397923af.pth`` / ``alexnet-owt-7be5be79.pth``.
        weights_path (str, optional): the linear layers; default: the ones inside the lpips package.
    """

    def __init__(self, net, backbone_path, weights_path=None):
        super().__init__()
        import lpips

        with warnings.catch_warnings():  # lpips still passes torchvision's deprecated `pretrained=`
            warnings.simplefilter('ignore', UserWarning)
            self.lpips = lpips.LPIPS(net=net, pnet_rand=True, model_path=weights_path, verbose=False)
        LPIPSJudge.load_backbone(self, backbone_path)  # reads self.lpips; torchvision's feature indices
        self.requires_grad_(False).eval()

    def forward(self, img, ref):
        return self.lpips(img, ref, normalize=True).reshape(img.shape[0])


class DISTSMetric(piq.DISTS):
    """``piq.DISTS`` (its forward, pooling and distance) with both weight files read from paths.

    Args:
        backbone_path (str): torchvision's ``vgg16-397923af.pth``.
        weights_path (str): piq's ``dists_weights.pt`` (``alpha``, ``beta``).
    """

    def __init__(self, backbone_path, weights_path):
        # piq.DISTS.__init__ fetches both files from the internet; this is it with local files
        channels = [3, 64, 128, 256, 512, 512]
        weights = torch.load(weights_path, map_location='cpu', weights_only=True)
        dists_weights = list(torch.split(weights['alpha'], channels, dim=1))
        dists_weights.extend(torch.split(weights['beta'], channels, dim=1))
        features = torchvision.models.vgg.make_layers(torchvision.models.vgg.cfgs['D'])  # vgg16().features
        state = torch.load(backbone_path, map_location='cpu', weights_only=True)
        features.load_state_dict({k[len('features.'):]: v for k, v in state.items() if k.startswith('features.')})
        layers = [piq.perceptual.VGG16_LAYERS[name] for name in ('relu1_2', 'relu2_2', 'relu3_3', 'relu4_3', 'relu5_3')]
        piq.perceptual.ContentLoss.__init__(self, features, layers=layers, weights=dists_weights, replace_pooling=True,
                                            reduction='none', normalize_features=False,
                                            allow_layers_weights_mismatch=True)
        self.requires_grad_(False).eval()


@functools.lru_cache(maxsize=8)
def _built(kind, device, *files):
    network = LPIPSMetric(*files) if kind == 'lpips' else DISTSMetric(*files)
    return network.to(device)


@METRIC_REGISTRY.register()
def calculate_lpips(img, img2, crop_border, input_order='HWC', test_y_channel=False, net='vgg', backbone_path=None,
                    weights_path=None, device='auto', **kwargs):
    """LPIPS v0.1 (lpips package, linear layers on) between RGB versions of two BasicSR images; lower is better.

    Args:
        net (str): ``vgg`` (default) or ``alex``, the backbone.
        backbone_path (str, optional): torchvision's ImageNet weights of ``net``; default: the torch hub cache.
        weights_path (str, optional): LPIPS linear layers; default: those inside the lpips package.
        device (str): ``auto`` (CUDA when there is one), ``cpu`` or ``cuda``.
    """
    check_choice('calculate_lpips', 'net', net, tuple(BACKBONE_URLS))
    backbone = find_weights('calculate_lpips', 'backbone_path', backbone_path, BACKBONE_URLS[net])
    check_existing_file('calculate_lpips: weights_path', weights_path,
                        "leave it out for the linear layers inside the lpips package")
    device = metric_device(device)
    x, y = rgb_pair(img, img2, crop_border, input_order, test_y_channel, 'calculate_lpips', device)
    with torch.no_grad():
        return _built('lpips', device, net, backbone, weights_path and os.path.expanduser(weights_path))(x, y).item()


@METRIC_REGISTRY.register()
def calculate_dists(img, img2, crop_border, input_order='HWC', test_y_channel=False, backbone_path=None,
                    weights_path=None, device='auto', **kwargs):
    """DISTS (piq, ``1 - DISTS similarity``; images whose short side exceeds 256 are resized to 256 as piq
    does) between RGB versions of two BasicSR images; lower is better.

    Args:
        backbone_path (str, optional): torchvision's ``vgg16-397923af.pth``; default: the torch hub cache.
        weights_path (str, optional): piq's ``dists_weights.pt``; default: the torch hub cache.
        device (str): ``auto`` (CUDA when there is one), ``cpu`` or ``cuda``.
    """
    backbone = find_weights('calculate_dists', 'backbone_path', backbone_path, BACKBONE_URLS['vgg'])
    weights = find_weights('calculate_dists', 'weights_path', weights_path, DISTS_URL)
    device = metric_device(device)
    x, y = rgb_pair(img, img2, crop_border, input_order, test_y_channel, 'calculate_dists', device)
    with torch.no_grad():
        return _built('dists', device, backbone, weights)(x, y).item()
