"""The Class-Module of the fine-grained dynamic loss (Fig. 4 of ``fine_grained_dynamic_loss.txt``):
"five convolutions, pooling and fully-connected layers", read as ClassSR's classifier (Kong et al.
2021), made fully convolutional so it scores every region of an image of any size."""
import torch
import torch.nn.functional as F
from basicsr.utils.registry import ARCH_REGISTRY
from torch import nn


@ARCH_REGISTRY.register()
class ClassModule(nn.Module):
    """LR image -> (N, M, h, w) class probabilities, one decision per ``4*pool`` x ``4*pool`` LR region.

    conv 4x4 stride 4 (in -> 128) + LeakyReLU(0.1), three 1x1 convs of 128 + LeakyReLU, 1x1 -> 32,
    average pooling over ``pool`` x ``pool`` (over the whole map when it is smaller), then a 1x1
    convolution as the fully-connected layer -> M logits, softmax over M.

    Args:
        num_in_ch (int): LR channels. Default: 3.
        num_classes (int): M, the number of anchor-area sizes. Default: 3.
        num_feat (int): width. Default: 128.
        pool (int): pooling window on the stride-4 map (8: one decision per 32x32 LR region). Default: 8.
    """

    def __init__(self, num_in_ch=3, num_classes=3, num_feat=128, pool=8):
        super().__init__()
        act = nn.LeakyReLU(0.1, inplace=True)
        self.features = nn.Sequential(nn.Conv2d(num_in_ch, num_feat, 4, stride=4), act,
                                      nn.Conv2d(num_feat, num_feat, 1), act, nn.Conv2d(num_feat, num_feat, 1), act,
                                      nn.Conv2d(num_feat, num_feat, 1), act, nn.Conv2d(num_feat, 32, 1))
        self.fc = nn.Conv2d(32, num_classes, 1)
        self.pool = pool

    def forward(self, x):
        if min(x.shape[-2:]) < 4:
            raise ValueError(f'ClassModule: the LR input must be at least 4x4, got {tuple(x.shape[-2:])}')
        features = self.features(x)
        if min(features.shape[-2:]) < self.pool:
            pooled = features.mean(dim=(-2, -1), keepdim=True)
        else:
            pooled = F.avg_pool2d(features, self.pool, ceil_mode=True)
        return torch.softmax(self.fc(pooled), dim=1)
