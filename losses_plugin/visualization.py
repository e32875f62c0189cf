"""Pictures of what a loss emphasises: weight maps as heat maps, in TensorBoard and PNG panels."""
import cv2
import numpy as np
import torch


def heat_map(maps, upper_percentile=99):
    """(N, C, H, W) non-negative maps -> (N, 3, H, W) RGB in [0, 1]: channel mean, scaled per image
    from its minimum (black) to its ``upper_percentile`` (pale yellow; a few strong edges would
    otherwise leave the rest of the map dark), inferno colour map."""
    mean = maps.detach().float().mean(dim=1)
    flat = mean.flatten(1)
    low = flat.min(dim=1).values.view(-1, 1, 1)
    rank = max(1, round(upper_percentile / 100 * flat.shape[1]))
    high = flat.kthvalue(rank, dim=1).values.view(-1, 1, 1)
    scaled = ((mean - low) / (high - low).clamp_min(1e-12)).clamp_(0, 1).mul_(255).round_()
    scaled = scaled.to(torch.uint8).cpu().numpy()
    rgb = [cv2.cvtColor(cv2.applyColorMap(m, cv2.COLORMAP_INFERNO), cv2.COLOR_BGR2RGB) for m in scaled]
    return torch.from_numpy(np.stack(rgb)).permute(0, 3, 1, 2).float() / 255


def loss_modules(model):
    """The model's losses that can show a weight map, by attribute name (``cri_pix``, ...)."""
    return {name: loss for name, loss in vars(model).items()
            if name.startswith('cri_') and callable(getattr(loss, 'weight_map', None))}


@torch.no_grad()
def log_weight_maps(model, tb_logger, current_iter, max_images=4):
    """Logs each loss's weight map for the last training batch (``model.output`` vs ``model.gt``), and
    the maps of ``model.weight_maps()`` where the model has one."""
    output, gt = model.output[:max_images], model.gt[:max_images]
    if output.dim() == 5:  # video: the centre frame
        output, gt = output[:, output.shape[1] // 2], gt[:, gt.shape[1] // 2]
    for name, loss in loss_modules(model).items():
        tb_logger.add_images(f'weight_maps/{name}', heat_map(loss.weight_map(output, gt)), current_iter)
        tb_logger.add_images(f'weight_maps/{name}_gt', gt.clamp(0, 1).float().cpu(), current_iter)
    # models whose weights come from a network (TLW, UDL) keep those of their last iteration
    model_maps = model.weight_maps() if callable(getattr(model, 'weight_maps', None)) else {}
    for name, maps in model_maps.items():
        tb_logger.add_images(f'weight_maps/{name}', heat_map(maps[:max_images]), current_iter)
    if model_maps:
        tb_logger.add_images('weight_maps/gt', gt.clamp(0, 1).float().cpu(), current_iter)


def labelled(img_bgr, text):
    """The image under a white strip holding ``text``."""
    header = np.full((24, img_bgr.shape[1], 3), 255, np.uint8)
    cv2.putText(header, text, (5, 17), cv2.FONT_HERSHEY_SIMPLEX, 0.5, (0, 0, 0), 1, cv2.LINE_AA)
    return np.vstack([header, img_bgr])


def to_bgr_uint8(rgb):
    """(3, H, W) RGB or (1, H, W) grey in [0, 1] -> HxWx3 BGR uint8."""
    img = (rgb.clamp(0, 1) * 255).round().to(torch.uint8).permute(1, 2, 0).cpu().numpy()
    return cv2.cvtColor(img, cv2.COLOR_GRAY2BGR if img.shape[2] == 1 else cv2.COLOR_RGB2BGR)


@torch.no_grad()
def loss_panel(gt, output, loss):
    """GT | output | |error| | weight map, as one BGR uint8 image.

    Args:
        gt (Tensor): (C, H, W) in [0, 1].
        output (Tensor): (C, H, W) in [0, 1].
        loss (nn.Module): a loss with ``weight_map(pred, target)``.
    """
    gt4, out4 = gt[None].float(), output[None].float()
    tiles = [(to_bgr_uint8(gt), 'GT'), (to_bgr_uint8(output), 'output'),
             (to_bgr_uint8(heat_map((out4 - gt4).abs())[0]), '|error|'),
             (to_bgr_uint8(heat_map(loss.weight_map(out4, gt4))[0]), f'{type(loss).__name__} weight map')]
    return np.hstack([labelled(img, text) for img, text in tiles])
