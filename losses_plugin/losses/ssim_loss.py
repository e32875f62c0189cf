"""SSIM loss with a Gaussian window of any sigma, eq. (4)-(6) of Zhao et al.
(``zhao_loss_functions_ssim_mix.txt``): ``1 - mean SSIM(p)``, per channel, then averaged."""
import torch
from basicsr.utils.registry import LOSS_REGISTRY

from losses_plugin.losses.gaussian_filter import PADDINGS, check_window_fits, filters_by_matmul, gaussian_filter
from losses_plugin.checks import OptionError, check_choice, check_number
from losses_plugin.losses.pixel_loss_base import PixelLoss, as_images

K1, K2 = 0.01, 0.03


def default_window_radius(sigma):
    """Radius of the usual SSIM window, ``int(3.5*sigma + 0.5)``: 5 (11 taps) for sigma 1.5."""
    return int(3.5 * sigma + 0.5)


def luminance_and_contrast_structure(pred, target, sigmas, radius, data_range=1.0, padding='valid'):
    """l(p) and cs(p) of eq. (4)-(5) for each Gaussian, its five moments filtered in one batched call (in
    two where only ``pred`` needs gradients: the backward pass then filters three moments, not five).

    Args:
        pred (Tensor): (N, C, H, W) output.
        target (Tensor): (N, C, H, W) ground truth.
        sigmas (Sequence[float]): the Gaussians' standard deviations.
        radius (int): the windows' radius (one support for every sigma).
        data_range (float): R of C1 = (0.01 R)^2, C2 = (0.03 R)^2. Default: 1.
        padding (str): 'valid' | 'reflect' | 'zero'. Default: 'valid'.
    Returns:
        tuple[Tensor, Tensor]: l and cs, each (N, C, K, H', W') for the K sigmas.
    """
    if pred.requires_grad and not target.requires_grad and filters_by_matmul(pred.shape[-2:], radius, padding):
        # a loss with wide windows: the target's moments need no backward pass, which saves more than the
        # second filtering call costs (for narrow windows, filtered by convolutions, it does not)
        with torch.no_grad():
            moments = reference_moments(target, sigmas, radius, padding)
        return luminance_and_contrast_structure_against(pred, target, moments, sigmas, radius, data_range, padding)
    c = pred.shape[1]
    stacked = torch.cat([pred, target, pred * pred, target * target, pred * target], dim=1)
    mu_x, mu_y, xx, yy, xy = gaussian_filter(stacked, sigmas, radius, padding).split(c, dim=1)
    return _luminance_and_contrast_structure(mu_x, mu_y, xx, yy, xy, data_range)


def reference_moments(target, sigmas, radius, padding='valid'):
    """The target's filtered moments ``(mu_y, E[y^2])``, each (N, C, K, H', W'): computed once where many
    predictions are compared with one target (:func:`luminance_and_contrast_structure_against`)."""
    c = target.shape[1]
    return tuple(gaussian_filter(torch.cat([target, target * target], dim=1), sigmas, radius, padding).split(c, dim=1))


def luminance_and_contrast_structure_against(pred, target, moments, sigmas, radius, data_range=1.0,
                                             padding='valid'):
    """As :func:`luminance_and_contrast_structure` for S predictions of each of N targets, the targets'
    moments given (:func:`reference_moments`); only the three moments that involve ``pred`` are filtered.

    Args:
        pred (Tensor): (S*N, C, H, W), prediction ``s*N + i`` compared with target ``i``.
        target (Tensor): (N, C, H, W).
        moments (tuple[Tensor, Tensor]): ``reference_moments(target, sigmas, radius, padding)``.
    Returns:
        (Tensor, Tensor): l and cs, each (S*N, C, K, H', W').
    """
    n, c = target.shape[:2]
    cross = (pred.reshape(-1, *target.shape) * target).reshape(pred.shape)
    filtered = gaussian_filter(torch.cat([pred, pred * pred, cross], dim=1), sigmas, radius, padding)
    mu_x, xx, xy = (m.reshape(-1, n, *m.shape[1:]) for m in filtered.split(c, dim=1))  # (S, N, ...)
    mu_y, yy = moments  # (N, ...): broadcast over the S predictions of each target
    luminance, contrast_structure = _luminance_and_contrast_structure(mu_x, mu_y, xx, yy, xy, data_range)
    return luminance.flatten(0, 1), contrast_structure.flatten(0, 1)


def _luminance_and_contrast_structure(mu_x, mu_y, xx, yy, xy, data_range):
    mu_xx, mu_yy, mu_xy = mu_x * mu_x, mu_y * mu_y, mu_x * mu_y
    c1, c2 = (K1 * data_range) ** 2, (K2 * data_range) ** 2
    luminance = (2 * mu_xy + c1) / (mu_xx + mu_yy + c1)
    contrast_structure = (2 * (xy - mu_xy) + c2) / ((xx - mu_xx) + (yy - mu_yy) + c2)
    return luminance, contrast_structure


@LOSS_REGISTRY.register()
class SSIMLoss(PixelLoss):
    """``1 - SSIM`` with a Gaussian window of std ``sigma`` (eq. 6; the paper trains sigma 1.5, 5, 9).

    Args:
        sigma (float): the Gaussian's std (sigma_G). Default: 1.5.
        window_size (int, optional): odd window width; default ``2*int(3.5*sigma + 0.5) + 1`` (11 at 1.5).
        data_range (float): image range, sets C1 = (0.01 R)^2 and C2 = (0.03 R)^2. Default: 1.0.
        padding (str): 'valid' (only where the window fits, as the paper) | 'reflect' | 'zero'. Default: 'valid'.
        loss_weight (float): multiplier, as BasicSR's. Default: 1.0.
        reduction (str): 'none' (the 1 - SSIM map) | 'mean' | 'sum'. Default: 'mean'.
    """

    def __init__(self, sigma=1.5, window_size=None, data_range=1.0, padding='valid', loss_weight=1.0,
                 reduction='mean'):
        super().__init__(loss_weight, reduction)
        check_number('SSIMLoss', 'sigma', sigma, above=0)
        if window_size is not None and (not isinstance(window_size, int) or window_size < 1 or window_size % 2 == 0):
            raise OptionError(f"SSIMLoss: option 'window_size' must be an odd positive integer, got {window_size!r}")
        check_number('SSIMLoss', 'data_range', data_range, above=0)
        check_choice('SSIMLoss', 'padding', padding, PADDINGS)
        self.sigma, self.data_range, self.padding = sigma, data_range, padding
        self.radius = default_window_radius(sigma) if window_size is None else window_size // 2

    def ssim_map(self, pred, target):
        check_window_fits('SSIMLoss', pred.shape[-2:], self.radius, self.padding)
        luminance, contrast_structure = luminance_and_contrast_structure(
            as_images(pred), as_images(target), (self.sigma,), self.radius, self.data_range, self.padding)
        return (luminance * contrast_structure)[:, :, 0]

    def loss_map(self, pred, target):
        return 1 - self.ssim_map(pred, target)

    def weight_map(self, pred, target):
        """The detached 1 - SSIM map: where the loss sees structure differ (cropped by 'valid')."""
        return self.loss_map(pred.detach(), target.detach())
