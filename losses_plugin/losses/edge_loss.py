"""MPRNet's edge loss (Zamir et al., CVPR 2021, eq. 3): the Charbonnier distance between the Laplacians
of the output and of the ground truth, where the Laplacian is the first level of a Burt-Adelson
Laplacian pyramid (the image minus its blurred, 2x-decimated and re-expanded self), as in the
authors' ``losses.EdgeLoss``. MPRNet trains each stage with Charbonnier + 0.05 * this loss."""
import torch
import torch.nn.functional as F
from basicsr.utils.registry import LOSS_REGISTRY
from torch import nn

from losses_plugin.checks import check_choice, check_inputs, check_number
from losses_plugin.losses.pixel_loss_base import REDUCTIONS, as_images, at_least_float32, reduce

PYRAMID_TAPS = (0.05, 0.25, 0.4, 0.25, 0.05)  # the authors' 5-tap generating kernel (Burt-Adelson, a = 0.4)


def _blur(img):
    """The separable 5x5 pyramid kernel on each channel of (N, C, H, W), replicate padding."""
    c = img.shape[1]
    taps = torch.tensor(PYRAMID_TAPS, dtype=img.dtype, device=img.device)
    img = F.pad(img, (2, 2, 2, 2), mode='replicate')
    img = F.conv2d(img, taps.view(1, 1, 1, 5).expand(c, 1, 1, 5), groups=c)
    return F.conv2d(img, taps.view(1, 1, 5, 1).expand(c, 1, 5, 1), groups=c)


def pyramid_laplacian(img):
    """``img - blur(4 * zero_upsample(decimate(blur(img))))``: what the 2x-decimated image cannot hold.

    (N, C, H, W) -> (N, C, H, W). The zeros inserted between the kept samples, times 4, keep the
    re-expanded image's mean (the kernel's taps sum to 1 per axis).
    """
    blurred = _blur(img)
    expanded = torch.zeros_like(blurred)
    expanded[..., ::2, ::2] = blurred[..., ::2, ::2] * 4
    return img - _blur(expanded)


@LOSS_REGISTRY.register()
class EdgeLoss(nn.Module):
    """``loss_weight * mean(sqrt((lap(pred) - lap(target))^2 + eps))``, lap = :func:`pyramid_laplacian`.

    Args:
        eps (float): added to the squared difference, as in BasicSR's CharbonnierLoss; MPRNet's eps of
            1e-3 is added squared, so its value here is 1e-6. Default: 1e-6.
        loss_weight (float): multiplier (MPRNet: 0.05). Default: 1.0.
        reduction (str): 'none' | 'mean' | 'sum'. Default: 'mean' (plain mean over elements).

    Example:
        >>> EdgeLoss(loss_weight=0.05)(torch.rand(2, 3, 16, 16), torch.rand(2, 3, 16, 16))
    """

    def __init__(self, eps=1e-6, loss_weight=1.0, reduction='mean'):
        super().__init__()
        check_number('EdgeLoss', 'eps', eps, minimum=0)
        check_number('EdgeLoss', 'loss_weight', loss_weight)
        check_choice('EdgeLoss', 'reduction', reduction, REDUCTIONS)
        self.eps, self.loss_weight, self.reduction = eps, loss_weight, reduction

    def forward(self, pred, target):
        """Charbonnier distance between the Laplacians of ``pred`` and ``target``, times ``loss_weight``.

        Args:
            pred (Tensor): (N, C, H, W) or (N, T, C, H, W), BasicSR's [0, 1] range.
            target (Tensor): ground truth, the shape of pred.
        """
        check_inputs('EdgeLoss', pred, target)
        shape = pred.shape
        pred, target = as_images(at_least_float32(pred)), as_images(at_least_float32(target))
        with torch.autocast(device_type=pred.device.type, enabled=False):
            with torch.no_grad():
                target_edges = pyramid_laplacian(target)
            diff = pyramid_laplacian(pred) - target_edges
            loss_map = torch.sqrt(diff.square() + self.eps).reshape(shape)
        return self.loss_weight * reduce(loss_map, self.reduction)
