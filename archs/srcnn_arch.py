"""SRCNN (Dong et al., 2014): three convolutions, 9-5-5, on the upsampled LR image."""
import torch.nn.functional as F
from basicsr.utils.registry import ARCH_REGISTRY
from torch import nn

from losses_plugin.checks import OptionError

UPSAMPLING = ('bicubic', 'bilinear', 'none')
ACTIVATIONS = {'relu': lambda ch: nn.ReLU(inplace=True), 'prelu': lambda ch: nn.PReLU(ch)}


@ARCH_REGISTRY.register()
class SRCNN(nn.Module):
    """SRCNN 9-5-5 with 'same' padding, so it trains on BasicSR's LR/GT pairs.

    The network upsamples the LR input itself (``upsampling``), as SRCNN's bicubic pre-processing;
    Zhao et al.'s variant (section 4.2) is ``act: prelu, upsampling: bilinear`` on RGB.

    Args:
        num_in_ch (int): input channels (3 for RGB, 1 for Y). Default: 3.
        num_out_ch (int): output channels. Default: 3.
        num_feat (int): width of the first layer (n1). Default: 64.
        num_feat2 (int): width of the second layer (n2). Default: 32.
        kernel_sizes (list[int]): the three kernel sizes. Default: (9, 5, 5).
        upscale (int): scale factor applied to the input first. Default: 4.
        upsampling (str): 'bicubic' | 'bilinear' | 'none' (input already upsampled). Default: 'bicubic'.
        act (str): 'relu' | 'prelu'. Default: 'relu'.
    """

    def __init__(self, num_in_ch=3, num_out_ch=3, num_feat=64, num_feat2=32, kernel_sizes=(9, 5, 5), upscale=4,
                 upsampling='bicubic', act='relu'):
        super().__init__()
        if upsampling not in UPSAMPLING:
            raise OptionError(f"SRCNN: option 'upsampling' must be one of {UPSAMPLING}, got {upsampling!r}")
        if act not in ACTIVATIONS:
            raise OptionError(f"SRCNN: option 'act' must be one of {tuple(ACTIVATIONS)}, got {act!r}")
        k1, k2, k3 = kernel_sizes
        self.upscale, self.upsampling = upscale, upsampling
        self.conv1 = nn.Conv2d(num_in_ch, num_feat, k1, padding=k1 // 2)
        self.act1 = ACTIVATIONS[act](num_feat)
        self.conv2 = nn.Conv2d(num_feat, num_feat2, k2, padding=k2 // 2)
        self.act2 = ACTIVATIONS[act](num_feat2)
        self.conv3 = nn.Conv2d(num_feat2, num_out_ch, k3, padding=k3 // 2)

    def forward(self, x):
        if self.upsampling != 'none' and self.upscale != 1:
            x = F.interpolate(x, scale_factor=self.upscale, mode=self.upsampling, align_corners=False)
        return self.conv3(self.act2(self.conv2(self.act1(self.conv1(x)))))
