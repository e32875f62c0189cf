"""Judges D of the TLW weight criterion (eq. 4 of ``trainable_loss_weights_tlw.txt``): a per-image
distance ``D(img, ref) >= 0`` that lets gradients reach ``img``.

- ``lpips``: the paper's judge, the ``lpips`` package's VGG16 with ``lpips=False`` (the normalised
  feature distance without the learned linear layers, as the reference code). Its backbone needs
  the ImageNet VGG16 weights: from ``weights_path``, else the torch hub cache; ``pretrained: false``
  uses random weights (tests only: the criterion is then meaningless).
- ``ms_ssim``: ``1 - MS-SSIM`` (Wang et al.'s pyramid; patches too small for five levels use the
  levels that fit, their weights renormalised); works offline, the demo's judge.
- ``ssim``: ``1 - SSIM`` (Gaussian window, sigma 1.5); ``l1``: mean absolute difference.
Judges are frozen (no trainable parameters, eval mode) and never saved into checkpoints.
"""
import os
import warnings

import torch
from torch import nn

from losses_plugin.checks import OptionError
from losses_plugin.losses.ms_ssim_loss import PYRAMID_RADIUS, WANG_WEIGHTS, ms_ssim_pyramid
from losses_plugin.losses.ssim_loss import SSIMLoss

VGG16_FILE = 'vgg16-397923af.pth'  # torchvision's ImageNet VGG16, as the torch hub caches it
VGG16_URL = f'https://download.pytorch.org/models/{VGG16_FILE}'


def pyramid_levels(height, width, max_levels=len(WANG_WEIGHTS)):
    """How many MS-SSIM levels (11x11 windows, halving between levels) fit an image."""
    levels = 0
    while levels < max_levels and min(height, width) >= 2 * PYRAMID_RADIUS * 2 ** levels + 1:
        levels += 1
    return levels


class L1Judge(nn.Module):

    def forward(self, img, ref):
        return (img - ref).abs().mean(dim=(1, 2, 3))


class SSIMJudge(nn.Module):

    def __init__(self, sigma=1.5):
        super().__init__()
        self.ssim = SSIMLoss(sigma=sigma, padding='valid', reduction='none')

    def forward(self, img, ref):
        return self.ssim(img, ref).mean(dim=(1, 2, 3))


class MSSSIMJudge(nn.Module):

    def forward(self, img, ref):
        levels = pyramid_levels(*img.shape[-2:])
        if levels == 0:
            raise ValueError(f'TLW judge ms_ssim: images of {tuple(img.shape[-2:])} are smaller than one 11x11 '
                             'window; use larger gt_size or judge type l1')
        weights = WANG_WEIGHTS
        if levels < len(WANG_WEIGHTS):  # the levels that fit, rescaled to the five levels' total
            weights = tuple(w * sum(WANG_WEIGHTS) / sum(WANG_WEIGHTS[:levels]) for w in WANG_WEIGHTS[:levels])
        return 1 - ms_ssim_pyramid(img, ref, weights=weights).mean(dim=1)


class LPIPSJudge(nn.Module):
    """LPIPS-VGG distance of [0, 1] images, ``lpips=False`` (no learned linear layers) by default.

    Args:
        weights_path (str, optional): torchvision's ``vgg16-397923af.pth``; default: the torch hub cache.
        pretrained (bool): false builds the backbone with random weights (tests). Default: true.
        linear (bool): the learned LPIPS linear layers (bundled with the package). Default: false.
    """

    def __init__(self, weights_path=None, pretrained=True, linear=False):
        super().__init__()
        import lpips

        with warnings.catch_warnings():  # lpips still passes torchvision's deprecated `pretrained=`
            warnings.simplefilter('ignore', UserWarning)
            self.lpips = lpips.LPIPS(net='vgg', lpips=linear, pretrained=linear, pnet_rand=True, verbose=False)
        if pretrained:
            self.load_backbone(self.find_weights(weights_path))
        self.requires_grad_(False)
        self.eval()

    @staticmethod
    def find_weights(weights_path):
        path = os.path.expanduser(weights_path) if weights_path else os.path.join(
            torch.hub.get_dir(), 'checkpoints', VGG16_FILE)
        if not os.path.isfile(path):
            where = ('train.tlw.judge.weights_path' if weights_path else
                     f'the torch hub cache ({os.path.dirname(path)}), where torchvision looks')
            raise OptionError(
                f"TLW judge lpips: the VGG16 backbone weights '{path}' do not exist. Download {VGG16_URL} on a "
                f'machine with internet and put it in {where}, or set train.tlw.judge.weights_path to the file; '
                "or use a weight-free judge (train.tlw.judge.type: ms_ssim).")
        return path

    def load_backbone(self, path):
        """Copies torchvision's VGG16 ``features.<i>`` weights into lpips's slices (which keep those indices)."""
        state = torch.load(path, map_location='cpu', weights_only=True)
        for stage in (self.lpips.net.slice1, self.lpips.net.slice2, self.lpips.net.slice3, self.lpips.net.slice4,
                      self.lpips.net.slice5):
            for index, layer in stage.named_children():
                if isinstance(layer, nn.Conv2d):
                    layer.weight.data.copy_(state[f'features.{index}.weight'])
                    layer.bias.data.copy_(state[f'features.{index}.bias'])

    def train(self, mode=True):
        return super().train(False)  # frozen: dropout and friends stay off under model.train()

    def forward(self, img, ref):
        return self.lpips(img, ref, normalize=True).reshape(img.shape[0])


JUDGES = {'lpips': LPIPSJudge, 'ms_ssim': MSSSIMJudge, 'ssim': SSIMJudge, 'l1': L1Judge}


def build_judge(opt):
    """``{type: lpips|ms_ssim|ssim|l1, ...}`` -> a frozen judge module."""
    opt = dict(opt or {'type': 'ms_ssim'})
    judge_type = opt.pop('type', None)
    if judge_type not in JUDGES:
        raise OptionError(f"train.tlw.judge.type must be one of {', '.join(map(repr, JUDGES))}, got {judge_type!r}")
    try:
        judge = JUDGES[judge_type](**opt)
    except TypeError as err:
        raise OptionError(f'train.tlw.judge ({judge_type}): {err}') from None
    return judge.requires_grad_(False).eval()
