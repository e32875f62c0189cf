"""DnCNN (Zhang et al., 2017): a plain conv/BN/ReLU stack that predicts the noise (residual learning)."""
from basicsr.utils.registry import ARCH_REGISTRY
from torch import nn

from losses_plugin.checks import OptionError, check_integer


@ARCH_REGISTRY.register()
class DnCNN(nn.Module):
    """DnCNN-S: conv+ReLU, (num_conv - 2) x (conv+BN+ReLU), conv; output ``x - noise``.

    Args:
        num_in_ch (int): input channels (1 for grey, 3 for colour). Default: 3.
        num_out_ch (int): output channels. Default: 3.
        num_feat (int): width. Default: 64.
        num_conv (int): number of convolutions, 17 in the paper. Default: 17.
        residual (bool): predict the noise and subtract it from the input. Default: True.
    """

    def __init__(self, num_in_ch=3, num_out_ch=3, num_feat=64, num_conv=17, residual=True):
        super().__init__()
        check_integer('DnCNN', 'num_conv', num_conv, 2)
        if residual and num_in_ch != num_out_ch:
            raise OptionError('DnCNN: residual learning needs num_in_ch == num_out_ch')
        layers = [nn.Conv2d(num_in_ch, num_feat, 3, padding=1), nn.ReLU(inplace=True)]
        for _ in range(num_conv - 2):
            layers += [nn.Conv2d(num_feat, num_feat, 3, padding=1, bias=False), nn.BatchNorm2d(num_feat),
                       nn.ReLU(inplace=True)]
        layers.append(nn.Conv2d(num_feat, num_out_ch, 3, padding=1))
        self.body = nn.Sequential(*layers)
        self.residual = residual

    def forward(self, x):
        out = self.body(x)
        return x - out if self.residual else out
