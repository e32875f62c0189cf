"""GRUNet, the denoiser of DPHSIR (Lai, Wei and Fu, "Deep plug-and-play prior for hyperspectral image
restoration", Neurocomputing 2022), which the asymmetric paper trains on DIV2K for its Table 5.

A 3-D U-Net over a spectral cube (N, C, bands, H, W) whose every layer is a gated recurrent convolution
unit: a 3-D convolution gives candidates Z (tanh) and forget gates F (sigmoid), and the unit runs QRNN3D's
"f-pooling" along the bands, ``h_b = F_b * h_{b-1} + (1 - F_b) * Z_b`` (Wei et al., TNNLS 2020). The first
and last units pool in both directions and add the two; inside, encoder and decoder units alternate
direction (down-sampling and up-sampling units backwards, the others forwards). Long skips concatenate
encoder features into the decoder, short ones add a 1x1x1 unit around each pair of units, and the network
adds its output to the noisy band values. A noise-level map, a second input channel filled with sigma,
tells it how strong the noise is.

Layer layout, widths (16, 32, 64, 128, 256), kernel sizes, directions, the released denoiser's settings
(noise map, no BatchNorm) and the initialisation follow the authors' published code; module names do too,
so a checkpoint of theirs (the released ``grunet.pth`` keeps the weights under ``net``) loads as it is
(``param_key_g: net``).

BasicSR hands networks (N, C, H, W) images: C becomes the band axis of a one-channel cube, so an RGB
image is a 3-band cube and a hyperspectral tensor of 31 channels a 31-band one.
"""
from collections import OrderedDict
from typing import Optional, Tuple, Union

import torch
import torch.nn.functional as F
from basicsr.utils.registry import ARCH_REGISTRY
from torch import nn

from losses_plugin.checks import OptionError, check_integer, check_number


def quasi_recurrent_pool(z: torch.Tensor, f: torch.Tensor, reverse: bool = False) -> torch.Tensor:
    """QRNN3D's f-pooling along the band axis (dim 2): ``h_b = f_b*h_{b-1} + (1 - f_b)*z_b``, starting
    from ``h = 0`` before the first band (the last one when ``reverse``).

    The recurrence is a loop over the bands (3 for an RGB image): each step needs the previous one.

    Args:
        z (Tensor): candidates, (N, C, B, H, W).
        f (Tensor): forget gates in [0, 1], same shape.
        reverse (bool): run from the last band to the first. Default: False.

    Returns:
        Tensor: the hidden states, same shape.
    """
    bands = range(z.shape[2] - 1, -1, -1) if reverse else range(z.shape[2])
    hidden = [None] * z.shape[2]
    h = torch.zeros_like(z[:, :, 0])
    for b in bands:
        h = f[:, :, b] * h + (1 - f[:, :, b]) * z[:, :, b]
        hidden[b] = h
    return torch.stack(hidden, dim=2)


def conv3d_by_bands(x: torch.Tensor, weight: torch.Tensor, bias: Optional[torch.Tensor] = None,
                    stride: Tuple[int, int] = (1, 1), padding: Tuple[int, int, int] = (0, 0, 0)) -> torch.Tensor:
    """A 3-D convolution with band stride 1 as one 2-D convolution over every band at once: the kernel's
    band taps become input channels (the neighbouring bands stacked), the bands join the batch.

    Same result as ``F.conv3d(x, weight, bias, (1, *stride), padding)``; PyTorch's CPU 3-D (and transposed
    3-D) convolutions run an unfold-based kernel several times slower than its 2-D one.

    Args:
        x (Tensor): (N, C, B, H, W).
        weight (Tensor): (O, C, kd, kh, kw).
        bias (Tensor | None): (O,).
        stride (tuple): (sh, sw), spatial only.
        padding (tuple): (pd, ph, pw), zeros.

    Returns:
        Tensor: (N, O, B + 2*pd - kd + 1, H', W').
    """
    taps, band_pad = weight.shape[2], padding[0]
    x = F.pad(x, (0, 0, 0, 0, band_pad, band_pad))
    bands = x.shape[2] - taps + 1
    stacked = torch.cat([x[:, :, d:d + bands] for d in range(taps)], dim=1)  # (N, taps*C, B', H, W)
    n, channels, _, height, width = stacked.shape
    stacked = stacked.transpose(1, 2).reshape(n * bands, channels, height, width)
    weight2d = weight.transpose(1, 2).reshape(weight.shape[0], channels, *weight.shape[3:])  # tap-major, as cat
    out = F.conv2d(stacked, weight2d, bias, stride, padding[1:])
    return out.reshape(n, bands, *out.shape[1:]).transpose(1, 2)


class BandConv3d(nn.Conv3d):
    """``nn.Conv3d`` (its parameters, so checkpoints keep their layout) computed by :func:`conv3d_by_bands`."""

    def forward(self, x):
        return conv3d_by_bands(x, self.weight, self.bias, self.stride[1:], self.padding)


class BandConvTranspose3d(nn.ConvTranspose3d):
    """``nn.ConvTranspose3d`` of stride 1: the convolution with the kernel flipped and in/out swapped, padded
    by ``k - 1 - p``, computed by :func:`conv3d_by_bands`."""

    def forward(self, x):
        weight = self.weight.transpose(0, 1).flip(2, 3, 4)
        padding = tuple(k - 1 - p for k, p in zip(self.kernel_size, self.padding))
        return conv3d_by_bands(x, weight, self.bias, (1, 1), padding)


class UpsampleConv3d(nn.Module):
    """Bilinear x2 up-sampling of H and W (the bands untouched), then a 3-D convolution."""

    def __init__(self, in_channels, out_channels):
        super().__init__()
        self.conv3d = BandConv3d(in_channels, out_channels, 3, 1, 1, bias=False)

    def forward(self, x):
        return self.conv3d(F.interpolate(x, scale_factor=(1, 2, 2), mode='trilinear', align_corners=True))


class GatedRecurrentConv3d(nn.Module):
    """One gated recurrent convolution unit: [BatchNorm ->] 3-D (de)convolution -> Z, F -> f-pooling.

    Args:
        in_channels (int): input channels.
        hidden_channels (int): output channels (the gates have as many each).
        kind (str): 'conv' (Conv3d), 'deconv' (ConvTranspose3d; stride 1, so the same size) or
            'upsample' (x2 in H, W, then Conv3d). Default: 'conv'.
        kernel_size (int): 3 or 1. Default: 3.
        stride (tuple): 'conv' only; (1, 2, 2) halves H and W. Default: 1.
        bidirectional (bool): pool forwards (gate F1) and backwards (gate F2) and add. Default: False.
        bias (bool): convolution bias (the authors use one in the last unit only). Default: False.
        bn (bool): BatchNorm3d before the convolution. Default: False.
    """

    def __init__(self, in_channels, hidden_channels, kind='conv', kernel_size=3, stride=1, bidirectional=False,
                 bias=False, bn=False):
        super().__init__()
        gates = hidden_channels * (3 if bidirectional else 2)
        padding = kernel_size // 2
        layers = OrderedDict()
        if bn:
            layers['bn'] = nn.BatchNorm3d(in_channels)
        if kind == 'conv':
            layers['conv'] = BandConv3d(in_channels, gates, kernel_size, stride, padding, bias=bias)
        elif kind == 'deconv':
            layers['deconv'] = BandConvTranspose3d(in_channels, gates, kernel_size, 1, padding, bias=bias)
        elif kind == 'upsample':
            layers['upsample_conv'] = UpsampleConv3d(in_channels, gates)
        else:
            raise ValueError(f"GatedRecurrentConv3d: kind must be 'conv', 'deconv' or 'upsample', got {kind!r}")
        self.conv = nn.Sequential(layers)  # named as in the authors' code: their checkpoints load
        self.hidden_channels = hidden_channels
        self.bidirectional = bidirectional

    def forward(self, x, reverse=False):
        gates = self.conv(x).split(self.hidden_channels, dim=1)
        z = torch.tanh(gates[0])
        if self.bidirectional:
            return (quasi_recurrent_pool(z, torch.sigmoid(gates[1]))
                    + quasi_recurrent_pool(z, torch.sigmoid(gates[2]), reverse=True))
        return quasi_recurrent_pool(z, torch.sigmoid(gates[1]), reverse)


class ResidualRecurrentBlock(nn.Module):
    """Two 3x3x3 units plus a 1x1x1 unit on the short skip, all pooling in one direction."""

    def __init__(self, in_channels, out_channels, kind, bn):
        super().__init__()
        self.conv1 = GatedRecurrentConv3d(in_channels, out_channels, kind, bn=bn)
        self.conv2 = GatedRecurrentConv3d(out_channels, out_channels, kind, bn=bn)
        self.conv_residual = GatedRecurrentConv3d(in_channels, out_channels, kind, kernel_size=1, bn=bn)

    def forward(self, x, reverse=False):
        return self.conv2(self.conv1(x, reverse), reverse) + self.conv_residual(x, reverse)


@ARCH_REGISTRY.register()
class GRUNet(nn.Module):
    """DPHSIR's denoiser: (N, bands, H, W) noisy image -> (N, bands, H, W) denoised image.

    Encoder: a bidirectional unit (1 or 2 -> num_feat), then per level a backward unit with stride
    (1, 2, 2) and a forward residual block doubling the width. Decoder: per level a backward x2 up-sampling
    unit halving the width, concatenation with the encoder features of that level, a forward residual block;
    then a bidirectional transposed-convolution unit to one channel, added to the noisy input.

    The noise-level map: DPHSIR's plug-and-play solver passes the current sigma with every call. BasicSR's
    single-input pipeline has one noise level, the dataset's, so the map holds ``noise_level`` (set it to the
    training sigma); ``forward(x, noise_level=...)`` overrides it per call, e.g. to denoise another sigma.

    H and W that are not multiples of ``2**num_down`` are replicate-padded to the next multiple and the
    output cropped back, so whole validation images of any size go through.

    Args:
        num_feat (int): width of the first level; each level doubles it (16 in the authors' code).
            Default: 16.
        num_down (int): number of x2 down-samplings (4: widths 16 ... 256). Default: 4.
        noise_level (float | None): sigma on the 0-255 scale held by the noise-level map (sigma/255 in the
            map); None: no map, one input channel (the authors' variant without it). Default: 25.
        bn (bool): BatchNorm3d before every convolution; the released plug-and-play denoiser has none.
            Default: False.
    """

    def __init__(self, num_feat: int = 16, num_down: int = 4, noise_level: Optional[float] = 25, bn: bool = False):
        super().__init__()
        check_integer('GRUNet', 'num_feat', num_feat, 1)
        check_integer('GRUNet', 'num_down', num_down, 1)
        if noise_level is not None:
            check_number('GRUNet', 'noise_level', noise_level, minimum=0)
        self.num_down, self.noise_level = num_down, noise_level
        widths = [num_feat * 2 ** level for level in range(num_down + 1)]
        # Module names are the authors' (Conv1, Down1, Conv2, ..., Up5, Up_conv5, ..., Conv) so that their
        # checkpoints load; for the default depth the levels are 1-4 and the blocks 2-5.
        self.Conv1 = GatedRecurrentConv3d(2 if noise_level is not None else 1, widths[0], bidirectional=True, bn=bn)
        for level in range(1, num_down + 1):
            self.add_module(f'Down{level}', GatedRecurrentConv3d(widths[level - 1], widths[level - 1],
                                                                 stride=(1, 2, 2), bn=bn))
            self.add_module(f'Conv{level + 1}', ResidualRecurrentBlock(widths[level - 1], widths[level], 'conv', bn))
        for level in range(num_down, 0, -1):
            self.add_module(f'Up{level + 1}', GatedRecurrentConv3d(widths[level], widths[level - 1], 'upsample',
                                                                   bn=bn))
            self.add_module(f'Up_conv{level + 1}', ResidualRecurrentBlock(widths[level], widths[level - 1], 'deconv',
                                                                          bn))
        self.Conv = GatedRecurrentConv3d(widths[0], 1, 'deconv', bidirectional=True, bias=True, bn=bn)
        self._init_weights()

    def _init_weights(self):
        """QRNN3D's default ('kn'), which trained the released denoiser: He normal (fan_out) for the
        convolutions, zero biases; transposed convolutions and BatchNorm keep PyTorch's initialisation."""
        for module in self.modules():
            if isinstance(module, nn.Conv3d):
                nn.init.kaiming_normal_(module.weight, mode='fan_out')
                if module.bias is not None:
                    nn.init.zeros_(module.bias)

    def forward_cube(self, cube: torch.Tensor) -> torch.Tensor:
        """The network on a cube (N, 1 or 2, B, H, W) as the authors call it: channel 0 the noisy bands,
        channel 1 (with the noise map) sigma/255; H and W multiples of ``2**num_down``.

        Returns:
            Tensor: (N, 1, B, H, W), the denoised bands.
        """
        skips = [self.Conv1(cube)]
        for level in range(1, self.num_down + 1):
            down = getattr(self, f'Down{level}')(skips[-1], reverse=True)
            skips.append(getattr(self, f'Conv{level + 1}')(down))
        x = skips.pop()
        for level in range(self.num_down, 0, -1):
            up = getattr(self, f'Up{level + 1}')(x, reverse=True)
            x = getattr(self, f'Up_conv{level + 1}')(torch.cat((skips.pop(), up), dim=1))
        return self.Conv(x) + cube[:, :1]

    def forward(self, x: torch.Tensor, noise_level: Union[float, torch.Tensor, None] = None) -> torch.Tensor:
        """(N, B, H, W) -> (N, B, H, W); ``noise_level`` (0-255 scale, a number or one per image, shape (N,))
        replaces the option's for this call."""
        if x.dim() != 4:
            raise ValueError(f'GRUNet: expected an (N, bands, H, W) tensor, got shape {tuple(x.shape)}')
        height, width = x.shape[-2:]
        multiple = 2 ** self.num_down
        pad_h, pad_w = -height % multiple, -width % multiple
        if pad_h or pad_w:
            x = F.pad(x, (0, pad_w, 0, pad_h), mode='replicate')
        cube = x.unsqueeze(1)
        if self.noise_level is not None:
            sigma = self.noise_level if noise_level is None else noise_level
            sigma = torch.as_tensor(sigma, dtype=x.dtype, device=x.device).reshape(-1, 1, 1, 1, 1) / 255
            cube = torch.cat((cube, sigma.expand_as(cube)), dim=1)
        elif noise_level is not None:
            raise ValueError('GRUNet: this network has no noise-level map (noise_level: null); call it without one')
        return self.forward_cube(cube)[:, 0, :, :height, :width]
