"""scripts/prepare_gopro.py: GOPRO_Large's per-sequence blur/sharp folders -> BasicSR paired folders and LMDB."""
import importlib.util

import cv2
import numpy as np
import pytest
from basicsr.data.paired_image_dataset import PairedImageDataset
from conftest import REPO

SEQUENCES = {'train': {'GOPR0372_07_00': 3, 'GOPR0374_11_01': 2}, 'test': {'GOPR0384_11_00': 2}}


def load_script():
    spec = importlib.util.spec_from_file_location('prepare_gopro', REPO / 'scripts' / 'prepare_gopro.py')
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def write(path, img):
    path.parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(path), img)


@pytest.fixture(scope='module')
def gopro(tmp_path_factory):
    """A GOPRO_Large-like folder of random 16x24 frames (with a blur_gamma folder to be ignored), prepared
    with --lmdb. Returns (source folder, output folder, the script's counts)."""
    root = tmp_path_factory.mktemp('gopro')
    rng = np.random.default_rng(0)
    for split, sequences in SEQUENCES.items():
        for sequence, frames in sequences.items():
            for frame in range(frames):
                name = f'{frame + 47:06d}.png'
                for kind in ('blur', 'sharp', 'blur_gamma'):
                    write(root / 'GOPRO_Large' / split / sequence / kind / name,
                          rng.integers(0, 256, (16, 24, 3), dtype=np.uint8))
    counts = load_script().prepare(str(root / 'GOPRO_Large'), str(root / 'GoPro'), lmdb=True)
    return root / 'GOPRO_Large', root / 'GoPro', counts


def test_every_pair_is_copied_under_sequence_prefixed_names(gopro):
    source, out, counts = gopro
    assert counts == {'train': 5, 'test': 2}
    for split, sequences in SEQUENCES.items():
        expected = sorted(f'{seq}_{frame + 47:06d}.png' for seq, n in sequences.items() for frame in range(n))
        for kind in ('blur', 'sharp'):
            assert sorted(p.name for p in (out / split / kind).iterdir()) == expected
        assert not (out / split / 'blur_gamma').exists()
    sequence = 'GOPR0374_11_01'
    for kind in ('blur', 'sharp'):
        assert ((out / 'train' / kind / f'{sequence}_000048.png').read_bytes() ==
                (source / 'train' / sequence / kind / '000048.png').read_bytes())


def test_lmdb_serves_the_same_pairs_as_the_folders_through_paired_image_dataset(gopro):
    _, out, _ = gopro

    def dataset(split, suffix, backend):
        return PairedImageDataset({'phase': 'val', 'scale': 1, 'io_backend': {'type': backend}, 'filename_tmpl': '{}',
                                   'dataroot_gt': str(out / split / f'sharp{suffix}'),
                                   'dataroot_lq': str(out / split / f'blur{suffix}')})

    for split in ('train', 'test'):
        disk, lmdb = dataset(split, '', 'disk'), dataset(split, '.lmdb', 'lmdb')
        assert len(lmdb) == len(disk) == sum(SEQUENCES[split].values())
        by_key = {lmdb[i]['gt_path']: lmdb[i] for i in range(len(lmdb))}
        for i in range(len(disk)):
            sample = disk[i]
            key = sample['gt_path'].rsplit('/', 1)[-1][:-len('.png')]
            assert sample['gt'].shape == (3, 16, 24)
            for name in ('lq', 'gt'):
                assert (by_key[key][name] == sample[name]).all()
            assert by_key[key]['lq_path'] == key  # blur and sharp pair by key


def test_a_frame_without_its_twin_is_refused(tmp_path):
    write(tmp_path / 'train' / 'GOPR0001' / 'blur' / '000001.png', np.zeros((8, 8, 3), np.uint8))
    write(tmp_path / 'train' / 'GOPR0001' / 'sharp' / '000002.png', np.zeros((8, 8, 3), np.uint8))
    with pytest.raises(ValueError, match='000001.png has no sharp twin'):
        load_script().prepare(str(tmp_path), str(tmp_path / 'out'))
