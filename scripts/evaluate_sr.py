"""Scores a trained SR network against bicubic upscaling on an option file's validation set.

Prints PSNR/SSIM (Y channel, border of `scale` pixels cropped, as BasicSR reports them) of
MATLAB-bicubic upscaling and of the network for every validation image, and writes a PNG panel
(LR-bicubic | output | GT) of the first image.

Usage: python scripts/evaluate_sr.py -opt options/demo/edsr_l1.yml
           [--model experiments/<name>/models/net_g_latest.pth] [--panel results/<name>/panel.png]
"""
import argparse
import os

import losses_plugin  # noqa: F401  (first: patches BasicSR and registers our classes)

import cv2
import numpy as np
import torch
from basicsr.metrics import calculate_psnr, calculate_ssim
from basicsr.utils import img2tensor, scandir, tensor2img
from basicsr.utils.matlab_functions import imresize

from losses_plugin.options import read_option_file
from losses_plugin.trained_network import latest_weights_path, load_trained_network
from losses_plugin.visualization import labelled


@torch.no_grad()
def super_resolve(net, lq_bgr):
    lq = img2tensor(lq_bgr.astype(np.float32) / 255., bgr2rgb=True, float32=True).unsqueeze(0)
    return tensor2img(net(lq), rgb2bgr=True, min_max=(0, 1))


def bicubic_upscale(lq_bgr, scale):
    up = imresize(lq_bgr.astype(np.float32) / 255., scale)
    return np.clip(np.round(up * 255.), 0, 255).astype(np.uint8)


def evaluate(opt, model_path, panel_path):
    scale = opt['scale']
    val = opt['datasets']['val']
    net = load_trained_network(opt, model_path)
    rows = []
    for i, name in enumerate(sorted(scandir(val['dataroot_gt']))):
        gt = cv2.imread(os.path.join(val['dataroot_gt'], name))
        lq = cv2.imread(os.path.join(val['dataroot_lq'], name))
        sr, bic = super_resolve(net, lq), bicubic_upscale(lq, scale)
        scores = [f(img, gt, crop_border=scale, test_y_channel=True)
                  for img in (bic, sr) for f in (calculate_psnr, calculate_ssim)]
        rows.append((name, *scores))
        if i == 0:
            os.makedirs(os.path.dirname(panel_path) or '.', exist_ok=True)
            panel = np.hstack([labelled(bic, 'LR-bicubic'), labelled(sr, 'output'), labelled(gt, 'GT')])
            cv2.imwrite(panel_path, panel)
    means = np.mean([r[1:] for r in rows], axis=0)
    print(f"\n{'image':<16}{'bicubic PSNR':>14}{'SSIM':>8}{'model PSNR':>13}{'SSIM':>8}")
    for name, *scores in rows + [('mean', *means)]:
        print(f'{name:<16}{scores[0]:>14.2f}{scores[1]:>8.4f}{scores[2]:>13.2f}{scores[3]:>8.4f}')
    print(f'\nPanel (LR-bicubic | output | GT): {panel_path}')
    return rows


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('-opt', required=True, help='the training option file')
    parser.add_argument('--model', help='network weights (default: experiments/<name>/models/net_g_latest.pth)')
    parser.add_argument('--panel', help='PNG panel to write (default: results/<name>/bicubic_output_gt.png)')
    args = parser.parse_args()
    opt = read_option_file(args.opt)
    model = args.model or latest_weights_path(opt)
    if not os.path.isfile(model):
        parser.error(f"no trained weights at '{model}': train first with `basicsr train -opt {args.opt}`")
    evaluate(opt, model, args.panel or os.path.join('results', opt['name'], 'bicubic_output_gt.png'))


if __name__ == '__main__':
    main()
