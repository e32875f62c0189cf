"""Writes a PNG panel GT | output | |error| | weight map, showing where a loss pushes.

Two ways to give the images:
    python scripts/loss_panel.py --gt GT.png --output OUT.png --loss "{type: SPLoss, alpha: 2}" --out panel.png
    python scripts/loss_panel.py -opt options/demo/edsr_sploss.yml [--model CKPT] [--index 0] --out panel.png
The second runs the option file's network (default: its net_g_latest.pth) on validation image
``--index`` and uses the option file's ``train.pixel_opt`` as the loss.
"""
import argparse
import os

import losses_plugin  # noqa: F401  (first: patches BasicSR and registers our classes)

import cv2
import torch
import yaml
from basicsr.data import build_dataset
from basicsr.losses import build_loss
from basicsr.utils import img2tensor

from losses_plugin.options import read_option_file
from losses_plugin.trained_network import latest_weights_path, load_trained_network
from losses_plugin.visualization import loss_panel


def read_rgb(path):
    img = cv2.imread(path, cv2.IMREAD_COLOR)
    if img is None:
        raise SystemExit(f"cannot read image '{path}'")
    return img2tensor(img.astype('float32') / 255., bgr2rgb=True, float32=True)


def images_from_checkpoint(opt, model_path, index):
    val_opt = dict(opt['datasets']['val'], phase='val', scale=opt.get('scale', 1))
    sample = build_dataset(val_opt)[index]
    with torch.no_grad():
        output = load_trained_network(opt, model_path)(sample['lq'][None])[0].clamp(0, 1)
    return sample['gt'], output


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--gt', help='ground-truth image')
    parser.add_argument('--output', help='restored image, same size as --gt')
    parser.add_argument('--loss', help='loss options as YAML, e.g. "{type: AsymmetricLoss, base: mse}"')
    parser.add_argument('-opt', help='a training option file (instead of --gt/--output/--loss)')
    parser.add_argument('--model', help='weights (default: experiments/<name>/models/net_g_latest.pth)')
    parser.add_argument('--index', type=int, default=0, help='validation image index (default 0)')
    parser.add_argument('--out', required=True, help='PNG to write')
    args = parser.parse_args()
    if args.opt:
        opt = read_option_file(args.opt)
        model = args.model or latest_weights_path(opt)
        if not os.path.isfile(model):
            parser.error(f"no weights at '{model}': train first with `basicsr train -opt {args.opt}`")
        gt, output = images_from_checkpoint(opt, model, args.index)
        loss = build_loss(dict(opt['train']['pixel_opt']))
    elif args.gt and args.output and args.loss:
        gt, output = read_rgb(args.gt), read_rgb(args.output)
        if gt.shape != output.shape:
            parser.error(f'--gt {tuple(gt.shape)} and --output {tuple(output.shape)} differ in size')
        loss = build_loss(yaml.safe_load(args.loss))
    else:
        parser.error('give either -opt, or --gt, --output and --loss')
    if not callable(getattr(loss, 'weight_map', None)):
        parser.error(f'{type(loss).__name__} has no weight map to show')
    os.makedirs(os.path.dirname(args.out) or '.', exist_ok=True)
    cv2.imwrite(args.out, loss_panel(gt, output, loss))
    print(f'wrote {args.out}')


if __name__ == '__main__':
    main()
