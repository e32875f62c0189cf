"""The UDL baseline's network (Ning et al. 2021, as section II of ``trainable_loss_weights_tlw.txt``
describes it): an SR backbone plus a three-layer head estimating the log-uncertainty s per pixel."""
import torch
import torch.nn.functional as F
from basicsr.utils.registry import ARCH_REGISTRY
from torch import nn

from losses_plugin.archs.backbone_features import BackboneWithFeatures
from losses_plugin.archs.fast_elu import FastELU
from losses_plugin.checks import check_choice


@ARCH_REGISTRY.register()
class UncertaintySRNet(nn.Module):
    """``forward(lq)`` -> SR image; ``forward(lq, return_uncertainty=True)`` -> (SR image, s).

    The head (conv 3x3, ELU, conv 3x3, ELU, conv 3x3) reads the backbone's features entering
    ``feature_module`` (HR-resolution in EDSR/RCAN/HAT/...; LR features, e.g. HAT's
    ``conv_before_upsample.0``, are upsampled to the output). Of a backbone that pads its input (HAT,
    to its window size) it reads the features of the image's own part (``BackboneWithFeatures``).

    Args:
        backbone (dict): a registered SR architecture's options, e.g. ``{type: EDSR, ...}`` or ``{type: HAT, ...}``.
        feature_module (str): the module whose input features the head reads. Default: 'conv_last'.
        num_out_ch (int): channels of s (the image's channels). Default: 3.
        num_feat (int): head width. Default: 64.
        channels_last (bool): run the head's full-resolution convolutions in channels-last layout: the same
            values, ~20% less CPU time for its forward+backward; cuDNN prefers it for half precision. Default: true.
    """

    def __init__(self, backbone, feature_module='conv_last', num_out_ch=3, num_feat=64, channels_last=True):
        super().__init__()
        self.net = BackboneWithFeatures(backbone, feature_module, owner='UncertaintySRNet')
        self.head = nn.Sequential(nn.Conv2d(self.net.feature_channels, num_feat, 3, padding=1), FastELU(),
                                  nn.Conv2d(num_feat, num_feat, 3, padding=1), FastELU(),
                                  nn.Conv2d(num_feat, num_out_ch, 3, padding=1))
        check_choice('UncertaintySRNet', 'channels_last', channels_last, (True, False))
        self.memory_format = torch.channels_last if channels_last else torch.contiguous_format
        self.head.to(memory_format=self.memory_format)

    def forward(self, x, return_uncertainty=False):
        sr, features = self.net(x)
        if not return_uncertainty:
            return sr
        s = self.head(features.contiguous(memory_format=self.memory_format))
        if s.shape[-2:] != sr.shape[-2:]:
            s = F.interpolate(s, size=sr.shape[-2:], mode='nearest')
        return sr, s
