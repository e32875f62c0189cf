"""Zhao et al.'s joint denoising + demosaicking network (section 4.1), also their JPEG deblocker."""
from basicsr.utils.registry import ARCH_REGISTRY

from losses_plugin.archs.srcnn_arch import SRCNN


@ARCH_REGISTRY.register()
class ZhaoDemosaickNet(SRCNN):
    """64x9x9 -> PReLU -> 64x5x5 -> PReLU -> 3x5x5, 'same' padding, on the bilinearly demosaicked
    (noisy) image; the same three layers as SRCNN, wider in the middle and with no upsampling.

    Args:
        num_in_ch (int): input channels. Default: 3.
        num_out_ch (int): output channels. Default: 3.
        num_feat (int): width of both hidden layers. Default: 64.
    """

    def __init__(self, num_in_ch=3, num_out_ch=3, num_feat=64):
        super().__init__(num_in_ch, num_out_ch, num_feat=num_feat, num_feat2=num_feat, kernel_sizes=(9, 5, 5),
                         upscale=1, upsampling='none', act='prelu')
