"""Builds the bundled demo data set from the photographs scikit-image ships (no download).

Layout (BasicSR's paired-folder layout; HR and LR files share names)::

    datasets/demo/train/HR/*.png            6 photographs, sides cut to multiples of 12
    datasets/demo/train/LR_bicubic/X{2,3,4}/*.png   MATLAB-bicubic downscaled
    datasets/demo/val/HR/*.png              2 other photographs
    datasets/demo/val/LR_bicubic/X{2,3,4}/*.png
    datasets/demo/GOPRO_Large/{train,test}/<sequence>/{blur,sharp}/*.png   a GoPro-like deblurring set: crops
                                            of panning windows, blurred by a line kernel (motion blur)
    datasets/demo/GoPro/{train,test}/{blur,sharp}/*.png   that set through scripts/prepare_gopro.py

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
from prepare_gopro import prepare as prepare_gopro  # scripts/ is this script's folder

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
# GoPro-like sequences: (split, source photograph, frames); each frame a 192x192 window panning 8 px right and
# 4 px down per frame, blurred by a line of 11 px turning 25 degrees per frame
GOPRO_SEQUENCES = (('train', 'astronaut', 3), ('train', 'rocket', 3), ('test', 'coffee', 2))
GOPRO_CROP, GOPRO_BLUR = 192, 11  # 192: NIQE needs 2x2 of its 96x96 blocks


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


def motion_kernel(length, angle):
    """A normalised line of ``length`` px at ``angle`` degrees: the blur of a straight camera motion."""
    kernel = np.zeros((length, length), np.float32)
    kernel[length // 2] = 1
    centre = ((length - 1) / 2, (length - 1) / 2)
    kernel = cv2.warpAffine(kernel, cv2.getRotationMatrix2D(centre, angle, 1), (length, length))
    return kernel / kernel.sum()


def build_gopro(out_dir, force=False):
    """GOPRO_Large's layout from the HR photographs, then prepared as the full GoPro set is."""
    if os.path.isfile(os.path.join(out_dir, 'GoPro', COMPLETE_MARK)) and not force:
        return
    for split, name, frames in GOPRO_SEQUENCES:
        hr = cv2.imread(os.path.join(out_dir, 'train' if split == 'train' else 'val', 'HR', f'{name}.png'))
        sequence = os.path.join(out_dir, 'GOPRO_Large', split, f'GOPR_demo_{name}')
        for frame in range(frames):
            blur = cv2.filter2D(hr, -1, motion_kernel(GOPRO_BLUR, 25 * frame), borderType=cv2.BORDER_REFLECT)
            y, x = 4 * frame, 8 * frame
            for kind, img in (('sharp', hr), ('blur', blur)):
                os.makedirs(os.path.join(sequence, kind), exist_ok=True)
                cv2.imwrite(os.path.join(sequence, kind, f'{frame:06d}.png'), img[y:y + GOPRO_CROP, x:x + GOPRO_CROP])
    prepare_gopro(os.path.join(out_dir, 'GOPRO_Large'), os.path.join(out_dir, 'GoPro'))
    open(os.path.join(out_dir, 'GoPro', COMPLETE_MARK), 'w').close()


def build(out_dir, force=False):
    if os.path.isfile(os.path.join(out_dir, COMPLETE_MARK)) and not force:
        print(f'[demo data] {out_dir} already built')
        build_gopro(out_dir)  # demo sets built before it existed
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
    build_gopro(out_dir, force)
    print(f'[demo data] wrote {out_dir}')


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--out', default='datasets/demo', help='output folder (default: datasets/demo)')
    parser.add_argument('--force', action='store_true', help='rebuild even if already built')
    args = parser.parse_args()
    build(args.out, args.force)


if __name__ == '__main__':
    main()
