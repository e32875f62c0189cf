"""The Mix loss of Zhao et al., eq. (14): ``alpha * (1 - MS-SSIM) + (1 - alpha) * G_sigmaM * |e|``."""
from basicsr.utils.registry import LOSS_REGISTRY

from losses_plugin.losses.gaussian_filter import PADDINGS, check_sigmas, check_window_fits, gaussian_filter
from losses_plugin.losses.ms_ssim_loss import PAPER_SIGMAS, ms_ssim_sigmas_map, sigmas_radius
from losses_plugin.checks import OptionError, check_choice, check_number
from losses_plugin.losses.pixel_loss_base import PixelLoss, as_images


@LOSS_REGISTRY.register()
class MSSSIML1Loss(PixelLoss):
    """Per pixel and channel ``alpha*(1 - MS-SSIM(p)) + (1 - alpha)*(G_sigmaM * |pred - target|)(p)``,
    the L1 map filtered with the largest sigma's Gaussian (the pixel weights MS-SSIM uses, eq. 14).

    Args:
        alpha (float): weight of the MS-SSIM term, in [0, 1]. Default: 0.84 (the paper's).
        sigmas (list[float]): the multi-sigma MS-SSIM's Gaussians. Default: (0.5, 1, 2, 4, 8).
        data_range (float): image range (C1, C2). Default: 1.0.
        padding (str): 'valid' (the paper) | 'reflect' | 'zero' (kornia's). Default: 'valid'.
        loss_weight (float): multiplier, as BasicSR's. Default: 1.0.
        reduction (str): 'none' | 'mean' | 'sum', as BasicSR's; 'mean' is a plain mean over elements. Default: 'mean'.
    """

    def __init__(self, alpha=0.84, sigmas=PAPER_SIGMAS, data_range=1.0, padding='valid', loss_weight=1.0,
                 reduction='mean'):
        super().__init__(loss_weight, reduction)
        check_number('MSSSIML1Loss', 'alpha', alpha, minimum=0)
        if alpha > 1:
            raise OptionError(f"MSSSIML1Loss: option 'alpha' must be in [0, 1], got {alpha!r}")
        check_choice('MSSSIML1Loss', 'padding', padding, PADDINGS)
        check_number('MSSSIML1Loss', 'data_range', data_range, above=0)
        check_sigmas('MSSSIML1Loss', sigmas)
        self.alpha, self.sigmas, self.data_range, self.padding = alpha, tuple(sorted(sigmas)), data_range, padding

    def loss_map(self, pred, target):
        pred, target = as_images(pred), as_images(target)
        radius = sigmas_radius(self.sigmas)
        check_window_fits('MSSSIML1Loss', pred.shape[-2:], radius, self.padding)
        ms_ssim = ms_ssim_sigmas_map(pred, target, self.sigmas, self.data_range, self.padding)
        l1 = gaussian_filter((pred - target).abs(), self.sigmas[-1:], radius, self.padding)[:, :, 0]
        return self.alpha * (1 - ms_ssim) + (1 - self.alpha) * l1 / self.data_range

    def weight_map(self, pred, target):
        return self.loss_map(pred.detach(), target.detach())
