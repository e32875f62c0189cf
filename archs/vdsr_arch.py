"""VDSR (Kim et al., 2016): 20 conv-ReLU layers predicting the residual of the bicubic-upsampled input."""
import torch.nn.functional as F
from basicsr.utils.registry import ARCH_REGISTRY
from torch import nn

from losses_plugin.checks import OptionError, check_integer


@ARCH_REGISTRY.register()
class VDSR(nn.Module):
    """VDSR on BasicSR's LR/GT pairs: the network upsamples the LR input itself (bicubic), then
    ``out = up + conv_last(body(conv_first(up)))``.

    Args:
        num_in_ch (int): input channels (3 RGB, 1 Y). Default: 3.
        num_out_ch (int): output channels. Default: 3.
        num_feat (int): width. Default: 64.
        num_conv (int): convolutions in all (first and last included). Default: 20.
        upscale (int): scale factor. Default: 4.
    """

    def __init__(self, num_in_ch=3, num_out_ch=3, num_feat=64, num_conv=20, upscale=4):
        super().__init__()
        check_integer('VDSR', 'num_conv', num_conv, 3)
        if num_in_ch != num_out_ch:
            raise OptionError(f'VDSR: predicts a residual, so num_in_ch ({num_in_ch}) must equal num_out_ch ({num_out_ch})')
        self.upscale = upscale
        self.conv_first = nn.Conv2d(num_in_ch, num_feat, 3, padding=1)
        body = []
        for _ in range(num_conv - 2):
            body += [nn.ReLU(inplace=True), nn.Conv2d(num_feat, num_feat, 3, padding=1)]
        self.body = nn.Sequential(*body, nn.ReLU(inplace=True))
        self.conv_last = nn.Conv2d(num_feat, num_out_ch, 3, padding=1)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):  # He initialisation, as the paper
                nn.init.kaiming_normal_(m.weight, nonlinearity='relu')
                nn.init.zeros_(m.bias)
        self.conv_last.weight.data.mul_(0.1)  # start near the bicubic image

    def forward(self, x):
        if self.upscale != 1:
            x = F.interpolate(x, scale_factor=self.upscale, mode='bicubic', align_corners=False)
        return x + self.conv_last(self.body(self.conv_first(x)))
