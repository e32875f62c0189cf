"""LapSRN (Lai et al., 2017), the FGD paper's baseline: a Laplacian pyramid of x2 levels.

Each level extracts features (``depth`` 3x3 convolutions with LeakyReLU 0.2) and upsamples them by
a transposed convolution; the image branch upsamples the previous level's image by a transposed
convolution (initialised bilinear) and adds the residual predicted from the features. BasicSR
trains the final output only (the original also supervises each level). Scale 3 uses one x3 level.
"""

import torch
from basicsr.utils.registry import ARCH_REGISTRY
from torch import nn

from losses_plugin.checks import OptionError


def bilinear_kernel(channels, factor):
    """Transposed-convolution weights (kernel factor + 2, padding 1) close to bilinear upsampling per channel."""
    size = factor + 2
    centre = (size - 1) / 2
    coords = torch.arange(size, dtype=torch.float32)
    profile = (1 - (coords - centre).abs() / factor).clamp_min(0)
    kernel = profile[:, None] * profile[None, :]
    weight = torch.zeros(channels, channels, size, size)
    weight[range(channels), range(channels)] = kernel
    return weight


def upsampler(channels_in, channels_out, factor):
    """Transposed convolution with output size ``factor`` x the input's."""
    return nn.ConvTranspose2d(channels_in, channels_out, factor + 2, stride=factor, padding=1)


@ARCH_REGISTRY.register()
class LapSRN(nn.Module):
    """LapSRN (Lai et al.), the FGD paper's baseline: progressive x2 levels (one x3 level for x3).

    Args:
        num_in_ch (int): 3 (RGB) or 1 (Y). Default: 3.
        num_out_ch (int): output channels. Default: 3.
        num_feat (int): width. Default: 64.
        depth (int): convolutions per level. Default: 10.
        upscale (int): 2, 4, 8 (x2 levels) or 3 (one x3 level). Default: 4.
    """

    def __init__(self, num_in_ch=3, num_out_ch=3, num_feat=64, depth=10, upscale=4):
        super().__init__()
        integer = isinstance(upscale, int) and not isinstance(upscale, bool)
        if not (integer and (upscale == 3 or upscale >= 2 and upscale & (upscale - 1) == 0)):
            raise OptionError(f"LapSRN: option 'upscale' must be 3 or a power of two (2, 4, 8, ...), got {upscale!r}")
        factors = [3] if upscale == 3 else [2] * (upscale.bit_length() - 1)
        if num_in_ch != num_out_ch:
            raise OptionError(f'LapSRN: adds residuals to its input image, so num_in_ch ({num_in_ch}) must equal '
                             f'num_out_ch ({num_out_ch})')
        act = nn.LeakyReLU(0.2, inplace=True)
        self.conv_first = nn.Sequential(nn.Conv2d(num_in_ch, num_feat, 3, padding=1), act)
        self.levels = nn.ModuleList(
            nn.Sequential(*[m for _ in range(depth) for m in (nn.Conv2d(num_feat, num_feat, 3, padding=1), act)],
                          upsampler(num_feat, num_feat, f), act) for f in factors)
        self.image_upsamplers = nn.ModuleList(upsampler(num_in_ch, num_in_ch, f) for f in factors)
        for up, f in zip(self.image_upsamplers, factors):
            up.weight.data.copy_(bilinear_kernel(num_in_ch, f))
            up.bias.data.zero_()
        # the residual of each level; the last one is conv_last (FGDNet reads its input features)
        self.residuals = nn.ModuleList(nn.Conv2d(num_feat, num_out_ch, 3, padding=1) for _ in factors[:-1])
        self.conv_last = nn.Conv2d(num_feat, num_out_ch, 3, padding=1)

    def forward(self, x):
        features, image = self.conv_first(x), x
        residual_convs = list(self.residuals) + [self.conv_last]
        for level, image_up, residual in zip(self.levels, self.image_upsamplers, residual_convs):
            features = level(features)
            image = image_up(image) + residual(features)
        return image
