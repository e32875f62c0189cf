"""Weight maps people can see: heat maps, TensorBoard images during training, PNG panels."""
import subprocess

import cv2
import numpy as np
import pytest
import torch
from conftest import PYTHON, REPO, run_cli, tiny_options, write_options
from tensorboard.backend.event_processing.event_accumulator import IMAGES, EventAccumulator

from losses_plugin.losses.sp_loss import SPLoss
from losses_plugin.visualization import heat_map, loss_panel


def test_heat_map_scales_each_image_from_its_min_to_its_max():
    maps = torch.stack([torch.linspace(0, 1, 16).view(1, 4, 4), torch.full((1, 4, 4), 3.)])
    rgb = heat_map(maps)
    assert rgb.shape == (2, 3, 4, 4) and rgb.min() >= 0 and rgb.max() <= 1
    assert rgb[0, :, 0, 0].sum() < 0.1 and rgb[0, :, 3, 3].sum() > 2  # inferno: black -> pale yellow
    assert torch.isfinite(rgb[1]).all()  # a constant map does not divide by zero


def test_loss_panel_has_four_tiles():
    gt = torch.rand(3, 20, 30)
    panel = loss_panel(gt, (gt + 0.1).clamp(0, 1), SPLoss())
    assert panel.shape == (24 + 20, 4 * 30, 3) and panel.dtype == np.uint8


@pytest.mark.slow
def test_training_logs_weight_maps_to_tensorboard(demo_data, tmp_path):
    opt = tiny_options(demo_data, 'maps', total_iter=2)
    opt['train']['pixel_opt'] = {'type': 'SPLoss', 'alpha': 2.0}
    opt['val']['val_freq'] = 2
    opt['logger'].update(use_tb_logger=True, log_weight_maps=True)
    run_cli(['train', '-opt', write_options(opt, tmp_path / 'maps.yml')], cwd=tmp_path)
    events = EventAccumulator(str(tmp_path / 'tb_logger' / 'maps'), size_guidance={IMAGES: 0}).Reload()
    assert {'weight_maps/cri_pix', 'weight_maps/cri_pix_gt'} <= set(events.Tags()['images'])
    image = events.Images('weight_maps/cri_pix')[0]
    assert image.step == 2 and (image.width, image.height) == (2 * 32, 32)  # the batch of 2, tiled


def test_panel_script_from_two_images(demo_data, tmp_path):
    gt_path = demo_data / 'val' / 'HR' / 'coffee.png'
    blurred = tmp_path / 'blurred.png'
    cv2.imwrite(str(blurred), cv2.GaussianBlur(cv2.imread(str(gt_path)), (5, 5), 1.5))
    out = tmp_path / 'panel.png'
    subprocess.run([PYTHON, str(REPO / 'scripts' / 'loss_panel.py'), '--gt', str(gt_path), '--output', str(blurred),
                    '--loss', '{type: AsymmetricLoss, base: mse}', '--out', str(out)], check=True, capture_output=True)
    panel = cv2.imread(str(out))
    height, width = cv2.imread(str(gt_path)).shape[:2]
    assert panel.shape == (height + 24, 4 * width, 3)
