"""Prepares an SR test set (Set5, Set14, B100, Urban100, ...) in BasicSR's benchmark layout.

From a folder of HR test images it writes, under ``--out``::

    GTmod12/<stem>.png       each image cut to sides that are multiples of 12 (so x2, x3 and x4 fit)
    LRbicx<s>/<stem>.png     MATLAB-compatible bicubic downscaling of GTmod12 (BasicSR's ``imresize``)

which is what the validation sets of ``options/*.yml`` read (``dataroot_gt: datasets/Set5/GTmod12``,
``dataroot_lq: datasets/Set5/LRbicx4``). BasicSR also distributes these folders ready-made (its
docs/DatasetPreparation.md); this script makes them from the original images when you have only those.

Examples:
    python scripts/prepare_benchmark.py --hr datasets/Set5/original --out datasets/Set5
    python scripts/prepare_benchmark.py --hr datasets/Urban100/original --out datasets/Urban100 --scale 4
"""
import argparse
import os

import losses_plugin  # noqa: F401  (first: makes BasicSR importable on current torchvision)

import cv2
from basicsr.utils import scandir
from tqdm import tqdm

from losses_plugin.data.bicubic import bicubic_downscale

IMAGE_SUFFIXES = ('.png', '.jpg', '.jpeg', '.bmp', '.tif', '.tiff')
MOD = 12  # BasicSR's GTmod12: divisible by every scale it ships (2, 3, 4)


def prepare(hr_path, out, scales):
    """Writes GTmod12 and LRbicx<s> for one image."""
    stem = os.path.splitext(os.path.basename(hr_path))[0]
    hr = cv2.imread(hr_path, cv2.IMREAD_COLOR)
    if hr is None:
        raise ValueError(f'cannot read image {hr_path}')
    h, w = hr.shape[:2]
    if h < MOD or w < MOD:
        raise ValueError(f'{hr_path} is {h}x{w}; test images need sides of at least {MOD} px')
    hr = hr[:h - h % MOD, :w - w % MOD]
    cv2.imwrite(os.path.join(out, f'GTmod{MOD}', f'{stem}.png'), hr)
    for scale in scales:
        cv2.imwrite(os.path.join(out, f'LRbicx{scale}', f'{stem}.png'), bicubic_downscale(hr, scale))


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--hr', required=True, help='folder of the original HR test images')
    parser.add_argument('--out', required=True, help='output folder, e.g. datasets/Set5')
    parser.add_argument('--scale', nargs='+', type=int, default=[2, 3, 4], choices=[2, 3, 4],
                        help='LR scales to write (default: 2 3 4)')
    args = parser.parse_args()
    if not os.path.isdir(args.hr):
        parser.error(f"--hr: folder '{args.hr}' does not exist")
    paths = sorted(os.path.join(args.hr, n) for n in scandir(args.hr) if n.lower().endswith(IMAGE_SUFFIXES))
    if not paths:
        parser.error(f"--hr: no images in '{args.hr}'")
    for folder in [f'GTmod{MOD}'] + [f'LRbicx{s}' for s in args.scale]:
        os.makedirs(os.path.join(args.out, folder), exist_ok=True)
    for path in tqdm(paths, desc='test images', unit='img'):
        prepare(path, args.out, args.scale)
    print(f'{len(paths)} images -> {args.out}/GTmod{MOD}, ' + ', '.join(f'LRbicx{s}' for s in args.scale))


if __name__ == '__main__':
    main()
