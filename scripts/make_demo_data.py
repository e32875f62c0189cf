"""Builds the bundled demo data set from the photographs scikit-image ships (no download).

Layout (BasicSR's paired-folder layout; HR and LR files share names)::

    datasets/demo/train/HR/*.png            6 photographs, sides cut to multiples of 12
    datasets/demo/train/LR_bicubic/X{2,3,4}/*.png   MATLAB-bicubic downscaled
    datasets/demo/val/HR/*.png              2 other photographs
    datasets/demo/val/LR_bicubic/X{2,3,4}/*.png

Usage: python scripts/make_demo_data.py [--out datasets/demo] [--force]
"""
import argparse
import os

import losses_plugin  # noqa: F401  (first: makes BasicSR importable on current torchvision)

import cv2
import numpy as np
import skimage.data
from tqdm import tqdm

from losses_plugin.data.bicubic import bicubic_downscale

SCALES = (2, 3, 4)
MAX_SIDE = 720  # keeps the demo fast on two CPU cores
SPLITS = {
    'train': {
        'astronaut': skimage.data.astronaut,
        'hubble': skimage.data.hubble_deep_field,
        'ihc': skimage.data.immunohistochemistry,
        'motorcycle': lambda: skimage.data.stereo_motorcycle()[0],
        'retina': skimage.data.retina,
        'rocket': skimage.data.rocket,
    },
    'val': {
        'chelsea': skimage.data.chelsea,
        'coffee': skimage.data.coffee,
    },
}
COMPLETE_MARK = '.complete'


def prepare_hr(rgb):
    """uint8 RGB -> uint8 BGR, longer side at most MAX_SIDE, both sides multiples of 12 (x2/x3/x4 fit)."""
    rgb = np.ascontiguousarray(rgb[..., :3])
    h, w = rgb.shape[:2]
    if max(h, w) > MAX_SIDE:
        factor = MAX_SIDE / max(h, w)
        rgb = cv2.resize(rgb, (round(w * factor), round(h * factor)), interpolation=cv2.INTER_AREA)
        h, w = rgb.shape[:2]
    rgb = rgb[:h - h % 12, :w - w % 12]
    return cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR)


def build(out_dir, force=False):
    if os.path.isfile(os.path.join(out_dir, COMPLETE_MARK)) and not force:
        print(f'[demo data] {out_dir} already built')
        return
    jobs = [(split, name, load) for split, images in SPLITS.items() for name, load in images.items()]
    for split, name, load in tqdm(jobs, desc='[demo data] images', unit='img'):
        hr = prepare_hr(load())
        os.makedirs(os.path.join(out_dir, split, 'HR'), exist_ok=True)
        cv2.imwrite(os.path.join(out_dir, split, 'HR', f'{name}.png'), hr)
        for scale in SCALES:
            lr_dir = os.path.join(out_dir, split, 'LR_bicubic', f'X{scale}')
            os.makedirs(lr_dir, exist_ok=True)
            cv2.imwrite(os.path.join(lr_dir, f'{name}.png'), bicubic_downscale(hr, scale))
    open(os.path.join(out_dir, COMPLETE_MARK), 'w').close()
    print(f'[demo data] wrote {out_dir}')


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--out', default='datasets/demo', help='output folder (default: datasets/demo)')
    parser.add_argument('--force', action='store_true', help='rebuild even if already built')
    args = parser.parse_args()
    build(args.out, args.force)


if __name__ == '__main__':
    main()
