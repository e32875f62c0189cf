"""FGDNet: any registered SR backbone trained with the fine-grained dynamic loss
(``fine_grained_dynamic_loss.txt``, eq. 1-6; no public code exists, this is our reading).

Pixel values in [0, 1] fall into K bins with thresholds ``t_i = i/K`` and anchors ``A_i = (t_i + t_{i+1})/2``
(eq. 1-2). A head on the backbone's last features predicts, per pixel and channel, logits over the
K bins; the predicted bin b and an anchor-area size a (in bins, chosen per region by the
Class-Module) confine the backbone's output sr to the anchor area:
``out_a = A_b + h * tanh((sr - A_b) / h)``, ``h = a / (2K)``. Training mixes the areas by the
Class-Module's probabilities; inference takes the most probable area. The bin maths are
:mod:`losses_plugin.fgd_bins`.
"""
import torch
import torch.nn.functional as F
from basicsr.utils.registry import ARCH_REGISTRY
from torch import nn

from losses_plugin.archs.backbone_features import BackboneWithFeatures
from losses_plugin.archs.class_module_arch import ClassModule
from losses_plugin.checks import OptionError, check_choice, check_integer, check_number
from losses_plugin.fgd_bins import anchor_of, bin_position, confine


@ARCH_REGISTRY.register()
class FGDNet(nn.Module):
    """Any SR backbone plus FGD's per-pixel bin head and Class-Module; the output is confined to the anchor area.

    Args:
        backbone (dict): a registered SR architecture's options, e.g. ``{type: EDSR, ...}``.
        feature_module (str): the module whose input features the bin head reads. Default: 'conv_last'.
        num_bins (int): K. Default: 32.
        area_sizes (list[int]): odd anchor-area sizes in bins, one per class. Default: (3, 5, 7).
            One size (``[5]``: the paper's "CS Loss") means a static area and no Class-Module.
        num_out_ch (int): image channels. Default: 3.
        class_module (dict): options of :class:`ClassModule` besides ``num_classes``. Default: {}.
        head_kernel (int): kernel of the bin head's convolution; 1 keeps the added parameters near the
            paper's +72K for LapSRN. Default: 1.
        bin_prior (float): ours: the head's logits are added to ``-bin_prior * d^2``, d the distance
            in bins from each anchor to the backbone's own (detached) output, so the predicted bin starts
            at the regression's bin and the head learns where the truth lies elsewhere. Without it (0) a
            fresh head scatters the bins and confines the output far from the truth until the head has
            learnt what the regression already knows. Default: 4.0.
        detach_bin_head (bool): ours, a stabiliser: the bin head reads the backbone's features detached,
            so L_c1 trains the head alone and the backbone learns from the regression terms only. False
            (the paper's reading: one network learns to classify and regress) lets L_c1's gradient into
            the shared features; with the bin prior that gradient is up to 25x the regression's on EDSR
            and can throw the output off until it runs away (see the README). Default: False.
    """

    def __init__(self, backbone, feature_module='conv_last', num_bins=32, area_sizes=(3, 5, 7), num_out_ch=3,
                 class_module=None, head_kernel=1, bin_prior=4.0, detach_bin_head=False):
        super().__init__()
        check_integer('FGDNet', 'num_bins', num_bins, 2)
        if not area_sizes or any(not isinstance(a, int) or a < 1 or a % 2 == 0 or a > num_bins for a in area_sizes):
            raise OptionError(f"FGDNet: option 'area_sizes' must be odd bin counts in 1..{num_bins}, got {area_sizes!r}")
        self.net = BackboneWithFeatures(backbone, feature_module, owner='FGDNet')
        check_number('FGDNet', 'bin_prior', bin_prior, minimum=0)
        self.num_bins, self.area_sizes, self.num_out_ch = num_bins, tuple(area_sizes), num_out_ch
        check_choice('FGDNet', 'detach_bin_head', detach_bin_head, (True, False))
        self.bin_prior, self.detach_bin_head = bin_prior, detach_bin_head
        self.bin_head = nn.Conv2d(self.net.feature_channels, num_out_ch * num_bins, head_kernel,
                                  padding=head_kernel // 2)
        self.class_module = None
        if len(self.area_sizes) > 1:
            self.class_module = ClassModule(num_classes=len(self.area_sizes), **dict(class_module or {}))
        # no buffers: under DDP, BasicSR validates on rank 0 alone, and a buffer broadcast would wait for rank 1

    def bin_logits(self, features):
        """The bin head. A 1x1 head is computed as one batched matrix product with the convolution's own weight
        and bias: the same values, and on a CPU half the time of the 1x1 convolution's forward+backward over
        full-resolution features (``scripts/benchmark_training_step.py``)."""
        head = self.bin_head
        if head.kernel_size != (1, 1):
            return head(features)
        n, c, h, w = features.shape
        weight = head.weight.view(1, -1, c).expand(n, -1, -1)
        return torch.baddbmm(head.bias.view(1, -1, 1), weight, features.flatten(2)).view(n, -1, h, w)

    def forward(self, x, return_all=False):
        """``forward(lq)`` -> the inference output (most probable area). ``return_all=True`` -> dict:
        ``out`` (probability-mixed areas, what training uses), ``inference`` (the plain forward's output;
        None in training mode), ``sr`` (the backbone's output), ``logits``
        (N, K, C, H, W), ``probs`` (N, M, h, w, region probabilities or None), ``bins``, ``areas``."""
        sr, features = self.net(x)
        logits = self.bin_logits(features.detach() if self.detach_bin_head else features)
        if logits.shape[-2:] != sr.shape[-2:]:
            logits = F.interpolate(logits, size=sr.shape[-2:], mode='nearest')
        logits = logits.unflatten(1, (self.num_bins, self.num_out_ch))  # bins on dim 1, as cross_entropy wants
        if self.bin_prior:
            # -bin_prior * (k - p)^2 up to -bin_prior * p^2, a per-pixel constant that changes neither the
            # softmax nor the argmax: one new (N, K, C, H, W) tensor, then in place (in place on the conv's
            # output view would make autograd copy it back). In float32 at least: under bf16 autocast the
            # head's logits are bf16, where k^2 rounds for odd k >= 17 and would favour odd bins.
            dtype = torch.promote_types(logits.dtype, torch.float32)
            position = bin_position(sr.detach().unsqueeze(1).to(dtype), self.num_bins)
            index = torch.arange(self.num_bins, device=sr.device, dtype=dtype).view(1, -1, 1, 1, 1)
            logits = torch.addcmul(logits, 2 * self.bin_prior * index, position).sub_(self.bin_prior * index.square())
        bins = logits.max(dim=1).indices  # argmax's first maximum, in half argmax's time on a CPU
        anchor = anchor_of(bins, self.num_bins, sr.dtype)
        probs = self.class_module(x) if self.class_module is not None else None
        if probs is None:
            hr_probs, areas = None, torch.zeros_like(bins[:, 0])
        else:
            hr_probs = F.interpolate(probs, size=sr.shape[-2:], mode='nearest')
            areas = hr_probs.argmax(dim=1)
        inference = None
        if not (return_all and self.training):  # the most probable area, confined in one pass
            sizes = sr.new_tensor(self.area_sizes)[areas].unsqueeze(1)
            inference = confine(sr, anchor, sizes, self.num_bins)
            if not return_all:
                return inference
        if hr_probs is None:
            mixed = confine(sr, anchor, self.area_sizes[0], self.num_bins)
        else:
            mixed = sum(hr_probs[:, i:i + 1] * confine(sr, anchor, a, self.num_bins)
                        for i, a in enumerate(self.area_sizes))
        return {'out': mixed, 'inference': inference, 'sr': sr, 'logits': logits, 'probs': probs, 'bins': bins,
                'areas': areas}
