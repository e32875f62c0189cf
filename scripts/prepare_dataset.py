"""Prepares an image folder for BasicSR training: bicubic LR, sub-images and LMDB files.

For an HR folder (and an LR folder per scale if you have one; otherwise LR is made with
MATLAB-compatible bicubic downscaling, BasicSR's ``imresize``), it writes, under ``--out``::

    <name>_LR_bicubic/X<s>/           full LR images (only when made here)
    <name>_HR_sub/  <name>_LR_bicubic_X<s>_sub/          overlapping sub-images (BasicSR's recipe)
    <name>_HR_sub.lmdb  <name>_LR_bicubic_X<s>_sub.lmdb  LMDB with meta_info.txt (basicsr.utils.lmdb_util)
                                                         and source_sha256.txt (the sub-images it holds)

HR crops are ``--crop-size`` wide every ``--step`` pixels; LR crops are the same regions at
1/s of the size, so HR and LR sub-images pair by name (``0001_s001.png``). BasicSR's DIV2K
settings are the defaults (480/240, no threshold); names such as ``0001x4.png`` in a given LR
folder are matched to ``0001.png``.

Examples:
    # DIV2K as BasicSR prepares it (x2, x3, x4 from the official LR folders)
    python scripts/prepare_dataset.py --hr datasets/DIV2K/DIV2K_train_HR \\
        --lr datasets/DIV2K/DIV2K_train_LR_bicubic/X2 datasets/DIV2K/DIV2K_train_LR_bicubic/X3 \\
             datasets/DIV2K/DIV2K_train_LR_bicubic/X4 \\
        --scale 2 3 4 --out datasets/DIV2K --name DIV2K_train
    # Flickr2K / BSD / any folder of photographs, LR made here
    python scripts/prepare_dataset.py --hr datasets/BSD300/images/train --scale 4 --out datasets/BSD300
"""
import argparse
import hashlib
import os
import re
import shutil
from functools import partial
from multiprocessing import Pool

import losses_plugin  # noqa: F401  (first: makes BasicSR importable on current torchvision)

import cv2
import numpy as np
from basicsr.utils import scandir
from basicsr.utils.lmdb_util import make_lmdb_from_imgs
from tqdm import tqdm

from losses_plugin.data.bicubic import bicubic_downscale

IMAGE_SUFFIXES = ('.png', '.jpg', '.jpeg', '.bmp', '.tif', '.tiff')
PNG_COMPRESSION = 3
FINGERPRINT = 'source_sha256.txt'  # in each LMDB folder: the sub-images it was made from


def crop_starts(length, crop, step, thresh):
    """Top-left offsets along one axis: every ``step``, plus a last crop flush with the border
    when more than ``thresh`` pixels would otherwise be left out."""
    if length < crop:
        raise ValueError(f'an image side of {length} px is smaller than --crop-size {crop}; lower --crop-size')
    starts = list(range(0, length - crop + 1, step))
    if length - (starts[-1] + crop) > thresh:
        starts.append(length - crop)
    return starts


def lr_stem(name, scale):
    """'0001x4' -> '0001' (DIV2K's LR naming); other names unchanged."""
    return re.sub(rf'x{scale}$', '', os.path.splitext(name)[0])


def split_image(hr_path, lr_paths, args):
    """Writes the sub-images of one HR image and its LR images; returns how many per image."""
    stem = os.path.splitext(os.path.basename(hr_path))[0]
    hr = cv2.imread(hr_path, cv2.IMREAD_UNCHANGED)
    if hr is None:
        raise ValueError(f'cannot read image {hr_path}')
    lcm = int(np.lcm.reduce(args.scale))
    hr = hr[:hr.shape[0] - hr.shape[0] % lcm, :hr.shape[1] - hr.shape[1] % lcm]
    lrs = {}
    for scale in args.scale:
        if lr_paths.get(scale):
            lrs[scale] = cv2.imread(lr_paths[scale][stem], cv2.IMREAD_UNCHANGED)
        else:
            lrs[scale] = bicubic_downscale(hr, scale)
            cv2.imwrite(os.path.join(args.out, f'{args.name}_LR_bicubic', f'X{scale}', f'{stem}.png'), lrs[scale],
                        [cv2.IMWRITE_PNG_COMPRESSION, PNG_COMPRESSION])
        expected = (hr.shape[0] // scale, hr.shape[1] // scale)
        if lrs[scale].shape[:2] != expected:
            raise ValueError(f'LR x{scale} of {stem} is {lrs[scale].shape[:2]}, expected {expected} '
                             f'(HR {hr.shape[:2]} / {scale})')
    ys = crop_starts(hr.shape[0], args.crop_size, args.step, args.thresh_size)
    xs = crop_starts(hr.shape[1], args.crop_size, args.step, args.thresh_size)
    index = 0
    for y in ys:
        for x in xs:
            index += 1
            name = f'{stem}_s{index:03d}.png'
            crop = hr[y:y + args.crop_size, x:x + args.crop_size]
            cv2.imwrite(os.path.join(args.out, f'{args.name}_HR_sub', name), crop,
                        [cv2.IMWRITE_PNG_COMPRESSION, PNG_COMPRESSION])
            for scale, lr in lrs.items():
                c, ly, lx = args.crop_size // scale, y // scale, x // scale
                cv2.imwrite(os.path.join(args.out, f'{args.name}_LR_bicubic_X{scale}_sub', name),
                            lr[ly:ly + c, lx:lx + c], [cv2.IMWRITE_PNG_COMPRESSION, PNG_COMPRESSION])
    return index


def folder_fingerprint(folder, names):
    """sha256 over the names and bytes of a folder's images: what an LMDB made from it holds."""
    digest = hashlib.sha256()
    for name in names:
        digest.update(name.encode())
        with open(os.path.join(folder, name), 'rb') as f:
            digest.update(f.read())
    return digest.hexdigest()


def make_lmdb(folder):
    """LMDB of a folder of sub-images, with the folder's fingerprint beside its meta_info.txt. One already
    there (the HR one, when scales are prepared one command at a time) is kept if it was made from the
    same images, and rebuilt otherwise (BasicSR's writer refuses to overwrite)."""
    names = sorted(scandir(folder, suffix='png'))
    fingerprint, stamp = folder_fingerprint(folder, names), os.path.join(folder + '.lmdb', FINGERPRINT)
    if os.path.isfile(stamp):
        with open(stamp) as f:
            if f.read().strip() == fingerprint:
                print(f'{folder}.lmdb is up to date')
                return
    shutil.rmtree(folder + '.lmdb', ignore_errors=True)
    make_lmdb_from_imgs(folder, folder + '.lmdb', names, [os.path.splitext(n)[0] for n in names],
                        multiprocessing_read=False)
    with open(stamp, 'w') as f:
        f.write(fingerprint + '\n')


def index_lr_folder(folder, scale):
    return {lr_stem(name, scale): os.path.join(folder, name)
            for name in scandir(folder) if name.lower().endswith(IMAGE_SUFFIXES)}


def check_args(parser, args):
    if args.lr and len(args.lr) != len(args.scale):
        parser.error(f'--lr: give one LR folder per --scale value ({len(args.scale)}), got {len(args.lr)}')
    for scale in args.scale:
        if args.crop_size % scale or args.step % scale:
            parser.error(f'--crop-size ({args.crop_size}) and --step ({args.step}) must be multiples of '
                         f'every scale ({scale})')
    for folder in [args.hr] + (args.lr or []):
        if not os.path.isdir(folder):
            parser.error(f"folder '{folder}' does not exist")


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--hr', required=True, help='folder of HR images')
    parser.add_argument('--lr', nargs='+', help='LR folders, one per --scale (default: made by bicubic)')
    parser.add_argument('--scale', nargs='+', type=int, default=[4], choices=[2, 3, 4], help='default: 4')
    parser.add_argument('--out', required=True, help='output folder')
    parser.add_argument('--name', help='prefix of the outputs (default: the HR folder name)')
    parser.add_argument('--crop-size', type=int, default=480, help='HR sub-image size (default 480)')
    parser.add_argument('--step', type=int, default=240, help='HR sub-image stride (default 240)')
    parser.add_argument('--thresh-size', type=int, default=0, help='border left out rather than cropped')
    parser.add_argument('--workers', type=int, default=os.cpu_count(),
                        help='processes (default: all cores; 1: none besides this one)')
    parser.add_argument('--no-lmdb', action='store_true', help='write the sub-image folders only')
    args = parser.parse_args()
    check_args(parser, args)
    args.name = args.name or os.path.basename(os.path.normpath(args.hr))

    for folder in [f'{args.name}_HR_sub'] + [f'{args.name}_LR_bicubic_X{s}_sub' for s in args.scale]:
        shutil.rmtree(os.path.join(args.out, folder), ignore_errors=True)  # written whole: no stale sub-images
        os.makedirs(os.path.join(args.out, folder))
    lr_paths = {}
    for i, scale in enumerate(args.scale):
        if args.lr:
            lr_paths[scale] = index_lr_folder(args.lr[i], scale)
        else:
            os.makedirs(os.path.join(args.out, f'{args.name}_LR_bicubic', f'X{scale}'), exist_ok=True)

    hr_paths = sorted(os.path.join(args.hr, n) for n in scandir(args.hr) if n.lower().endswith(IMAGE_SUFFIXES))
    if not hr_paths:
        parser.error(f"no images in '{args.hr}'")
    split = partial(split_image, lr_paths=lr_paths, args=args)
    if args.workers > 1:
        with Pool(args.workers) as pool:
            counts = list(tqdm(pool.imap_unordered(split, hr_paths), total=len(hr_paths), desc='sub-images',
                               unit='img'))
    else:  # in this process: no fork (a multi-threaded caller, such as a test runner, can deadlock in one)
        counts = [split(path) for path in tqdm(hr_paths, desc='sub-images', unit='img')]
    print(f'{sum(counts)} sub-images from {len(hr_paths)} images')
    if not args.no_lmdb:
        for folder in [f'{args.name}_HR_sub'] + [f'{args.name}_LR_bicubic_X{s}_sub' for s in args.scale]:
            make_lmdb(os.path.join(args.out, folder))


if __name__ == '__main__':
    main()
