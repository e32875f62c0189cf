"""MPRNet (Zamir et al., CVPR 2021, "Multi-stage progressive image restoration"), the deblurring network of
the SPLoss paper's Table 2, from spandrel-extra-arches' maintained copy of the authors' code.

The wrapper holds that class's modules under the authors' names (``shallow_feat1``, ``stage1_encoder``,
..., ``tail``), so the authors' released checkpoint (``Deblurring/pretrained_models/model_deblurring.pth``,
its weights under ``state_dict``, possibly with DataParallel's ``module.`` prefixes) loads as it is::

    path:
      pretrain_network_g: experiments/pretrained_models/model_deblurring.pth
      param_key_g: state_dict

spandrel-extra-arches is imported when an MPRNet is built, not when ``losses_plugin`` is imported: its
package imports all of its architectures (and spandrel's, ~3 s when spandrel is not loaded yet).
"""
import warnings

import torch.nn.functional as F
from basicsr.utils.registry import ARCH_REGISTRY
from torch import nn

from losses_plugin.checks import OptionError, check_integer

MULTIPLE = 8  # stage 1 splits the image into 2x2 patches, and each patch's U-Net halves it twice


@ARCH_REGISTRY.register()
class MPRNet(nn.Module):
    """Three stages: four patches (encoder-decoder), two patches (encoder-decoder), the whole image (ORSNet).

    ``forward(x)`` -> the final (stage 3) image: what BasicSR's validation, testing and EMA see.
    ``forward(x, return_stages=True)`` -> ``[stage 3, stage 2, stage 1]`` images, final first as MPRNet
    returns them; each is supervised in training
    (:class:`~losses_plugin.models.stage_supervised_model.StageSupervisedModel`). Inputs whose sides are not multiples of 8 are padded by reflection to the next
    multiple (as the authors' demo does) and every output is cropped back; sides under 8 are refused.

    Defaults are the authors' deblurring configuration (``Deblurring/MPRNet.py``); spandrel's own defaults
    (40/20/16 features) are its deraining ones.

    Args:
        in_c (int): input channels; 3 (RGB) only, as the authors' supervised attention modules are. Default: 3.
        out_c (int): output channels; 3 only, likewise. Default: 3.
        n_feat (int): features of the shallow extractors and the first U-Net level. Default: 96.
        scale_unetfeats (int): features added per U-Net level. Default: 48.
        scale_orsnetfeats (int): features ORSNet adds to n_feat. Default: 32.
        num_cab (int): channel-attention blocks per ORSNet block (the U-Nets have their own). Default: 8.
        kernel_size (int): convolution size. Default: 3.
        reduction (int): channel-attention reduction. Default: 4.
        bias (bool): convolution biases. Default: False.
    """

    def __init__(self, in_c=3, out_c=3, n_feat=96, scale_unetfeats=48, scale_orsnetfeats=32, num_cab=8, kernel_size=3,
                 reduction=4, bias=False):
        super().__init__()
        for option, value in (('n_feat', n_feat), ('scale_unetfeats', scale_unetfeats),
                              ('scale_orsnetfeats', scale_orsnetfeats), ('num_cab', num_cab),
                              ('kernel_size', kernel_size), ('reduction', reduction)):
            check_integer('MPRNet', option, value, 1)
        if in_c != 3 or out_c != 3:
            raise OptionError(f'MPRNet: in_c and out_c must be 3 (its supervised attention modules are RGB), got '
                              f'{in_c} and {out_c}')
        with warnings.catch_warnings():  # spandrel's CodeFormer, imported with it, scripts a function
            warnings.filterwarnings('ignore', message='`torch.jit.script` is deprecated', category=FutureWarning)
            from spandrel_extra_arches.architectures.MPRNet import MPRNet as SpandrelMPRNet

        net = SpandrelMPRNet(in_c=in_c, out_c=out_c, n_feat=n_feat, scale_unetfeats=scale_unetfeats,
                             scale_orsnetfeats=scale_orsnetfeats, num_cab=num_cab, kernel_size=kernel_size,
                             reduction=reduction, bias=bias)
        # adopt its modules under their own names: the authors' state-dict keys, no 'net.' prefix
        for name, module in net.named_children():
            self.add_module(name, module)
        self._stages = SpandrelMPRNet.forward

    def forward(self, x, return_stages=False):
        """The deblurred image, or every stage's.

        Args:
            x (Tensor): (N, in_c, H, W) blurred images, H and W >= 8.
            return_stages (bool): all stage outputs instead of the final image.

        Returns:
            Tensor or list[Tensor]: (N, out_c, H, W), or three such tensors (stage 3, stage 2, stage 1).
        """
        h, w = x.shape[-2:]
        if h < MULTIPLE or w < MULTIPLE:
            raise ValueError(f'MPRNet: inputs must be at least {MULTIPLE}x{MULTIPLE} pixels, got {h}x{w}')
        pad_h, pad_w = -h % MULTIPLE, -w % MULTIPLE
        if pad_h or pad_w:
            x = F.pad(x, (0, pad_w, 0, pad_h), mode='reflect')
        stages = [s[..., :h, :w] for s in self._stages(self, x)]
        return stages if return_stages else stages[0]
