"""Prepares the GoPro deblurring data set (Nah et al. 2017, ``GOPRO_Large``) for BasicSR's
``PairedImageDataset``, as the SPLoss paper's Table 2 and MPRNet use it (2103 training pairs, 1111 test pairs).

The official layout is one folder per video sequence::

    GOPRO_Large/train/<sequence>/blur/000047.png    blurred frame (the network's input)
    GOPRO_Large/train/<sequence>/sharp/000047.png   its sharp frame (the ground truth)
    GOPRO_Large/train/<sequence>/blur_gamma/...      gamma-corrected blur: not used (MPRNet and the
                                                     SPLoss paper train and test on blur)
    GOPRO_Large/test/...                             likewise

This writes BasicSR's paired folders, one file per pair named ``<sequence>_<frame>.png`` in both::

    <output>/train/blur/   <output>/train/sharp/   <output>/test/blur/   <output>/test/sharp/

and with ``--lmdb`` also ``<output>/train/blur.lmdb``, ``sharp.lmdb`` (and the test ones), with
``meta_info.txt`` (``basicsr.utils.lmdb_util``). The PNG files are copied byte for byte (``--link``:
hard links, no extra disk space, on the same file system). The folders are written whole on every run.

Usage:
    python scripts/prepare_gopro.py --input datasets/GOPRO_Large --output datasets/GoPro --lmdb
"""
import argparse
import os
import shutil

import losses_plugin  # noqa: F401  (first: makes BasicSR importable on current torchvision)

from basicsr.utils.lmdb_util import make_lmdb_from_imgs
from tqdm import tqdm

SPLITS = ('train', 'test')
FOLDERS = ('blur', 'sharp')  # BasicSR's lq and gt
IGNORED = 'blur_gamma'


def sequence_pairs(split_dir):
    """``[(sequence, frame file name)]`` of every blur/sharp pair in one split, sorted.

    Raises:
        ValueError: a sequence lacks blur/ or sharp/, or a blurred frame lacks its sharp twin (or the reverse).
    """
    pairs = []
    for sequence in sorted(os.listdir(split_dir)):
        folder = os.path.join(split_dir, sequence)
        if not os.path.isdir(folder):
            continue
        frames = {}
        for kind in FOLDERS:
            if not os.path.isdir(os.path.join(folder, kind)):
                raise ValueError(f"{folder}: no '{kind}' folder (expected GOPRO_Large's <split>/<sequence>/blur|sharp)")
            frames[kind] = {n for n in os.listdir(os.path.join(folder, kind)) if n.lower().endswith('.png')}
        unpaired = sorted(frames['blur'] ^ frames['sharp'])
        if unpaired:
            side = 'sharp' if unpaired[0] in frames['blur'] else 'blur'
            raise ValueError(f'{folder}: {unpaired[0]} has no {side} twin ({len(unpaired)} unpaired frames)')
        pairs += [(sequence, name) for name in sorted(frames['blur'])]
    return pairs


def make_lmdb(folder):
    """``<folder>.lmdb`` with BasicSR's meta_info.txt, keys the file names without extension."""
    names = sorted(os.listdir(folder))
    shutil.rmtree(folder + '.lmdb', ignore_errors=True)  # BasicSR's writer refuses to overwrite
    make_lmdb_from_imgs(folder, folder + '.lmdb', names, [os.path.splitext(n)[0] for n in names],
                        multiprocessing_read=False)


def prepare(input_dir, output_dir, lmdb=False, link=False):
    """Writes the paired folders (and LMDB files) of every split found under ``input_dir``.

    Returns:
        dict[str, int]: pairs written per split.
    """
    splits = [s for s in SPLITS if os.path.isdir(os.path.join(input_dir, s))]
    if not splits:
        raise ValueError(f"{input_dir}: neither 'train' nor 'test' is there (expected GOPRO_Large's layout)")
    counts = {}
    for split in splits:
        pairs = sequence_pairs(os.path.join(input_dir, split))
        if not pairs:
            raise ValueError(f'{os.path.join(input_dir, split)}: no blur/sharp pairs')
        for kind in FOLDERS:
            shutil.rmtree(os.path.join(output_dir, split, kind), ignore_errors=True)
            shutil.rmtree(os.path.join(output_dir, split, f'{kind}.lmdb'), ignore_errors=True)
            os.makedirs(os.path.join(output_dir, split, kind))
        place = os.link if link else shutil.copyfile
        for sequence, name in tqdm(pairs, desc=f'{split} pairs', unit='pair'):
            for kind in FOLDERS:
                place(os.path.join(input_dir, split, sequence, kind, name),
                      os.path.join(output_dir, split, kind, f'{sequence}_{name}'))
        counts[split] = len(pairs)
        sequences = len({s for s, _ in pairs})
        print(f'{split}: {len(pairs)} pairs from {sequences} sequence{"s" * (sequences != 1)} '
              f'(any {IGNORED} folders ignored)')
        if lmdb:
            for kind in FOLDERS:
                make_lmdb(os.path.join(output_dir, split, kind))
    return counts


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--input', required=True, help='the GOPRO_Large folder (holding train/ and test/)')
    parser.add_argument('--output', required=True, help='output folder, e.g. datasets/GoPro')
    parser.add_argument('--lmdb', action='store_true', help='also write LMDB files of every folder')
    parser.add_argument('--link', action='store_true', help='hard-link the PNG files instead of copying them')
    args = parser.parse_args()
    if not os.path.isdir(args.input):
        parser.error(f"--input: folder '{args.input}' does not exist")
    try:
        prepare(args.input, args.output, args.lmdb, args.link)
    except ValueError as error:
        parser.error(str(error))


if __name__ == '__main__':
    main()
