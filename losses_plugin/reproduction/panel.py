"""A crop of the first validation image as every run of a grid restores it, beside the ground truth
(and the weight map of each run's loss where it has one)."""
import copy
import os

import cv2
import numpy as np
import torch
from basicsr.data import build_dataset
from basicsr.losses import build_loss

from losses_plugin.options import read_option_file
from losses_plugin.trained_network import load_trained_network
from losses_plugin.visualization import to_bgr_uint8, heat_map, labelled

TILE = 128
PER_ROW = 5


def validation_pair(opt):
    """(lq, gt) tensors of the first image of the option file's first validation set."""
    phase = next(p for p in opt['datasets'] if p.startswith('val'))
    dataset_opt = dict(copy.deepcopy(opt['datasets'][phase]), phase='val', scale=opt['scale'])
    sample = build_dataset(dataset_opt)[0]
    return sample['lq'][None], sample['gt'][None]


def centre_crop(img, size=TILE):
    h, w = img.shape[-2:]
    top, left = max(0, (h - size) // 2), max(0, (w - size) // 2)
    return img[..., top:top + size, left:left + size]


@torch.no_grad()
def crop_panel(grid, option_dir, experiments_dir, out_path):
    """Writes the panel to ``out_path``; returns False when no run has weights yet."""
    tiles, gt = [], None
    for run in grid.runs:
        opt = read_option_file(os.path.join(option_dir, f'{run.name}.yml'))
        weights = os.path.join(experiments_dir, opt['name'], 'models', 'net_g_latest.pth')
        if not os.path.isfile(weights):
            continue
        lq, run_gt = validation_pair(opt)
        if gt is None:
            gt = centre_crop(run_gt[0])
            tiles.append(labelled(to_bgr_uint8(gt), 'ground truth'))
        output = load_trained_network(opt, weights)(lq).clamp(0, 1)
        tiles.append(labelled(to_bgr_uint8(centre_crop(output[0])), run.label[:22]))
        loss_opt = opt['train'].get('pixel_opt', {})
        try:
            loss = build_loss(copy.deepcopy(loss_opt))
        except (KeyError, ValueError, TypeError):
            loss = None
        if callable(getattr(loss, 'weight_map', None)) and output.shape == run_gt.shape:
            weight = heat_map(loss.weight_map(output, run_gt))[0]
            tiles.append(labelled(to_bgr_uint8(centre_crop(weight)), f'weights: {run.label[:13]}'))
    if gt is None:
        return False
    blank = np.full_like(tiles[0], 255)
    tiles += [blank] * (-len(tiles) % PER_ROW)
    rows = [np.hstack(tiles[i:i + PER_ROW]) for i in range(0, len(tiles), PER_ROW)]
    cv2.imwrite(out_path, np.vstack(rows), [cv2.IMWRITE_JPEG_QUALITY, 90])  # photographs: JPEG keeps it small
    return True
