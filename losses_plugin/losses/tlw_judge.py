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

from losses_plugin.checks import OptionError, check_number
from losses_plugin.losses.ms_ssim_loss import PYRAMID_RADIUS, WANG_WEIGHTS, ms_ssim_pyramid, pyramid_reference
from losses_plugin.losses.ssim_loss import (default_window_radius, luminance_and_contrast_structure_against,
                                            reference_moments)

VGG16_FILE = 'vgg16-397923af.pth'  # torchvision's ImageNet VGG16, as the torch hub caches it
VGG16_URL = f'https://download.pytorch.org/models/{VGG16_FILE}'


def pyramid_levels(height, width, max_levels=len(WANG_WEIGHTS)):
    """How many MS-SSIM levels (11x11 windows, halving between levels) fit an image."""
    levels = 0
    while levels < max_levels and min(height, width) >= 2 * PYRAMID_RADIUS * 2 ** levels + 1:
        levels += 1
    return levels


class Judge(nn.Module):
    """A distance ``D(img, ref)`` whose ``ref`` side is prepared once (:meth:`reference`) and shared by
    S images per reference (:meth:`distance`): TLW scores 2 (E-step) and 2T (M-step) images against each gt."""

    def reference(self, ref):
        """What :meth:`distance` needs of (N, C, H, W) references; by default the references themselves."""
        return ref

    def distance(self, img, reference):
        """(S*N,) distances of images (S*N, C, H, W), image ``s*N + i`` against reference ``i``."""
        raise NotImplementedError

    def forward(self, img, ref):
        return self.distance(img, self.reference(ref))


def per_reference(img, ref):
    """(S*N, ...) images as (S, N, ...), so that (N, ...) reference tensors broadcast over S."""
    return img.reshape(-1, *ref.shape)


class L1Judge(Judge):

    def distance(self, img, ref):
        return (per_reference(img, ref) - ref).abs().mean(dim=(2, 3, 4)).flatten()


class SSIMJudge(Judge):

    def __init__(self, sigma=1.5):
        super().__init__()
        check_number('train.tlw.judge (ssim)', 'sigma', sigma, above=0)
        self.sigmas, self.radius = (sigma,), default_window_radius(sigma)

    def reference(self, ref):
        return ref, reference_moments(ref, self.sigmas, self.radius)

    def distance(self, img, reference):
        ref, moments = reference
        luminance, contrast_structure = luminance_and_contrast_structure_against(img, ref, moments, self.sigmas,
                                                                                 self.radius)
        return 1 - (luminance * contrast_structure).mean(dim=(1, 2, 3, 4))


class MSSSIMJudge(Judge):

    def reference(self, ref):
        levels = pyramid_levels(*ref.shape[-2:])
        if levels == 0:
            raise ValueError(f'TLW judge ms_ssim: images of {tuple(ref.shape[-2:])} are smaller than one 11x11 '
                             'window; use larger gt_size or judge type l1')
        return pyramid_reference(ref, levels)

    def distance(self, img, reference):
        weights = WANG_WEIGHTS
        if len(reference) < len(WANG_WEIGHTS):  # the levels that fit, rescaled to the five levels' total
            weights = tuple(w * sum(WANG_WEIGHTS) / sum(WANG_WEIGHTS[:len(reference)])
                            for w in WANG_WEIGHTS[:len(reference)])
        return 1 - ms_ssim_pyramid(img, None, weights=weights, reference=reference).mean(dim=1)


class LPIPSJudge(Judge):
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

    def reference(self, ref):
        return self.features(ref)

    def features(self, x):
        """The unit-normalised VGG features of [0, 1] images, as ``lpips.LPIPS(normalize=True)`` computes them."""
        import lpips

        return [lpips.normalize_tensor(f) for f in self.lpips.net(self.lpips.scaling_layer(2 * x - 1))]

    def distance(self, img, reference):
        """``lpips.LPIPS``'s distance, the references' features computed once (:meth:`reference`)."""
        total = 0
        for layer, (feat, ref_feat) in enumerate(zip(self.features(img), reference)):
            diff = (per_reference(feat, ref_feat) - ref_feat).square().flatten(0, 1)
            diff = self.lpips.lins[layer](diff) if self.lpips.lpips else diff.sum(dim=1, keepdim=True)
            total = total + diff.mean(dim=(1, 2, 3))
        return total


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
