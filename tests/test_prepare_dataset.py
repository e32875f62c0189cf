"""scripts/prepare_dataset.py: sub-images and LMDB that train exactly like the folders."""
import runpy
import shlex
import subprocess
import sys

import cv2
import numpy as np
import pytest
import torch
from basicsr.data.paired_image_dataset import PairedImageDataset
from basicsr.utils.matlab_functions import imresize
from conftest import PYTHON, REPO, load_params, run_cli, tiny_options, write_options

from losses_plugin.data.bicubic import bicubic_downscale
from losses_plugin.data.deterministic_sampling import KeySeededDataset
from losses_plugin.options import read_option_file

pytestmark = pytest.mark.slow


@pytest.fixture(scope='module')
def prepared(demo_data, tmp_path_factory):
    out = tmp_path_factory.mktemp('prepared')
    subprocess.run([PYTHON, str(REPO / 'scripts' / 'prepare_dataset.py'), '--hr', str(demo_data / 'train' / 'HR'),
                    '--scale', '2', '4', '--crop-size', '96', '--step', '48', '--out', str(out), '--name', 'demo',
                    '--workers', '2'], check=True, capture_output=True)
    return out


def dataset(prepared, backend, scale=4):
    suffix = '.lmdb' if backend == 'lmdb' else ''
    opt = {'phase': 'train', 'scale': scale, 'gt_size': 64, 'use_hflip': True, 'use_rot': True,
           'io_backend': {'type': backend}, 'filename_tmpl': '{}',
           'dataroot_gt': str(prepared / f'demo_HR_sub{suffix}'),
           'dataroot_lq': str(prepared / f'demo_LR_bicubic_X{scale}_sub{suffix}')}
    return PairedImageDataset(opt)


def test_sub_images_pair_and_lr_is_matlab_bicubic(prepared, demo_data):
    hr_names = sorted(p.name for p in (prepared / 'demo_HR_sub').iterdir())
    for scale in (2, 4):
        assert sorted(p.name for p in (prepared / f'demo_LR_bicubic_X{scale}_sub').iterdir()) == hr_names
    hr_full = cv2.imread(str(demo_data / 'train' / 'HR' / 'astronaut.png'))  # 504 x 504
    lr_full = cv2.imread(str(prepared / 'demo_LR_bicubic' / 'X4' / 'astronaut.png'))
    expected = np.clip(np.round(imresize(hr_full.astype(np.float32) / 255., 0.25) * 255.), 0, 255)
    assert np.array_equal(lr_full, expected.astype(np.uint8))
    # 504 px, crops of 96 every 48: starts 0..384 (9) plus the flush crop at 408 -> 10 x 10
    assert len([n for n in hr_names if n.startswith('astronaut_')]) == 100
    last = cv2.imread(str(prepared / 'demo_HR_sub' / 'astronaut_s100.png'))
    assert np.array_equal(last, hr_full[408:504, 408:504])
    lr_last = cv2.imread(str(prepared / 'demo_LR_bicubic_X4_sub' / 'astronaut_s100.png'))
    assert np.array_equal(lr_last, lr_full[102:126, 102:126])
    meta = (prepared / 'demo_HR_sub.lmdb' / 'meta_info.txt').read_text().splitlines()
    assert len(meta) == len(hr_names) and meta[0] == 'astronaut_s001.png (96,96,3) 1'


def test_lmdb_gives_the_same_samples_as_folders(prepared):
    disk = KeySeededDataset(dataset(prepared, 'disk'), seed=3)
    lmdb = KeySeededDataset(dataset(prepared, 'lmdb'), seed=3)
    assert len(disk) == len(lmdb) > 0
    for key in [(0, i) for i in range(0, len(disk), 37)]:
        a, b = disk[key], lmdb[key]
        assert torch.equal(a['gt'], b['gt']) and torch.equal(a['lq'], b['lq'])


def test_training_from_lmdb_equals_training_from_folders(prepared, demo_data, tmp_path):
    weights = {}
    for backend in ('disk', 'lmdb'):
        opt = tiny_options(demo_data, f'from_{backend}', total_iter=3)
        suffix = '.lmdb' if backend == 'lmdb' else ''
        opt['datasets']['train'].update(io_backend={'type': backend}, dataset_enlarge_ratio=1,
                                        dataroot_gt=str(prepared / f'demo_HR_sub{suffix}'),
                                        dataroot_lq=str(prepared / f'demo_LR_bicubic_X4_sub{suffix}'))
        del opt['val'], opt['datasets']['val']
        run_cli(['train', '-opt', write_options(opt, tmp_path / f'{backend}.yml')], cwd=tmp_path)
        weights[backend] = load_params(tmp_path / 'experiments' / f'from_{backend}' / 'models' / 'net_g_latest.pth')
    for name, tensor in weights['disk'].items():
        assert torch.equal(tensor, weights['lmdb'][name])


def test_given_lr_folder_with_div2k_names(demo_data, tmp_path):
    """DIV2K ships LR as 0001x4.png beside HR 0001.png; sub-images pair by the HR name."""
    hr_dir, lr_dir = tmp_path / 'DIV2K_train_HR', tmp_path / 'X4'
    hr_dir.mkdir()
    lr_dir.mkdir()
    for i, name in enumerate(('astronaut', 'ihc'), start=1):
        hr = cv2.imread(str(demo_data / 'train' / 'HR' / f'{name}.png'))
        cv2.imwrite(str(hr_dir / f'{i:04d}.png'), hr)
        cv2.imwrite(str(lr_dir / f'{i:04d}x4.png'), cv2.imread(str(demo_data / 'train' / 'LR_bicubic' / 'X4' / f'{name}.png')))
    subprocess.run([PYTHON, str(REPO / 'scripts' / 'prepare_dataset.py'), '--hr', str(hr_dir), '--lr', str(lr_dir),
                    '--scale', '4', '--crop-size', '240', '--step', '120', '--out', str(tmp_path / 'out'),
                    '--name', 'DIV2K_train', '--no-lmdb'], check=True, capture_output=True)
    hr_subs = sorted(p.name for p in (tmp_path / 'out' / 'DIV2K_train_HR_sub').iterdir())
    assert hr_subs == sorted(p.name for p in (tmp_path / 'out' / 'DIV2K_train_LR_bicubic_X4_sub').iterdir())
    assert hr_subs[0] == '0001_s001.png' and len(hr_subs) == 2 * 16  # 504 px: starts 0, 120, 240, 264
    assert not (tmp_path / 'out' / 'DIV2K_train_LR_bicubic').exists()  # nothing regenerated
    lr_sub = cv2.imread(str(tmp_path / 'out' / 'DIV2K_train_LR_bicubic_X4_sub' / '0002_s016.png'))
    assert np.array_equal(lr_sub, cv2.imread(str(lr_dir / '0002x4.png'))[66:126, 66:126])


def prepare_commands():
    """{command: the folders the option files read from its output}, from every full option file's `prepare:`."""
    commands = {}
    for path in sorted((REPO / 'options').glob('*.yml')):
        for dataset in read_option_file(str(path))['datasets'].values():
            text = dataset['prepare']
            command = text[text.index('python scripts/'):].split(' (or ')[0]
            commands.setdefault(command, set()).update(
                dataset[k] for k in ('dataroot_gt', 'dataroot_lq') if dataset.get(k))
    return commands


def test_every_prepare_command_writes_what_its_option_files_read(demo_data, tmp_path, monkeypatch):
    """Runs each `prepare:` command of options/*.yml on two stand-in photographs in the folders it names."""
    commands = prepare_commands()
    monkeypatch.chdir(tmp_path)
    assert len(commands) >= 10  # DIV2K x2/x3/x4, BSD300 x3/x4, DF2K, TLW x2/x3/x4, Set5, Set14
    photos = [cv2.imread(str(demo_data / 'train' / 'HR' / f'{name}.png'))[:240, :240] for name in ('astronaut', 'ihc')]
    for command, dataroots in commands.items():
        args = shlex.split(command)[1:]
        if '--input' in args:  # prepare_gopro.py reads GOPRO_Large's <split>/<sequence>/blur|sharp/ frames
            for split, kind in (('train', 'blur'), ('train', 'sharp'), ('test', 'blur'), ('test', 'sharp')):
                frames = tmp_path / args[args.index('--input') + 1] / split / 'GOPR0001' / kind
                frames.mkdir(parents=True, exist_ok=True)
                for i, photo in enumerate(photos, start=1):
                    cv2.imwrite(str(frames / f'{i:06d}.png'), photo)
        else:
            hr = tmp_path / args[args.index('--hr') + 1]
            hr.mkdir(parents=True, exist_ok=True)
            for i, photo in enumerate(photos, start=1):
                cv2.imwrite(str(hr / f'{i:04d}.png'), photo)
        if '--lr' in args:  # DIV2K's own LR folders: 0001x4.png beside HR 0001.png
            scale = int(args[args.index('--scale') + 1])
            lr = tmp_path / args[args.index('--lr') + 1]
            lr.mkdir(parents=True, exist_ok=True)
            for i, photo in enumerate(photos, start=1):
                cv2.imwrite(str(lr / f'{i:04d}x{scale}.png'), bicubic_downscale(photo, scale))
        small = ['--crop-size', '120', '--step', '120', '--workers', '1'] if 'prepare_dataset' in args[0] else []
        monkeypatch.setattr(sys, 'argv', args + small)  # the script itself, in this process: no start-up cost
        runpy.run_path(str(REPO / args[0]), run_name='__main__')
        for root in dataroots:
            assert (tmp_path / root).is_dir(), f'{command!r} did not write {root}'
            if root.endswith('.lmdb'):
                assert (tmp_path / root / 'meta_info.txt').is_file()
            else:
                assert len(list((tmp_path / root).iterdir())) == 2


def test_benchmark_layout_is_mod12_gt_and_matlab_bicubic_lr(demo_data, tmp_path):
    hr = tmp_path / 'original'
    hr.mkdir()
    photo = cv2.imread(str(demo_data / 'train' / 'HR' / 'astronaut.png'))[:101, :150]
    cv2.imwrite(str(hr / 'baby.png'), photo)
    subprocess.run([PYTHON, str(REPO / 'scripts' / 'prepare_benchmark.py'), '--hr', str(hr), '--out',
                    str(tmp_path / 'Set5'), '--scale', '2', '4'], check=True, capture_output=True)
    gt = cv2.imread(str(tmp_path / 'Set5' / 'GTmod12' / 'baby.png'))
    assert np.array_equal(gt, photo[:96, :144])
    lr = cv2.imread(str(tmp_path / 'Set5' / 'LRbicx4' / 'baby.png'))
    expected = np.clip(np.round(imresize(photo[:96, :144].astype(np.float32) / 255., 0.25) * 255.), 0, 255)
    assert np.array_equal(lr, expected.astype(np.uint8)) and lr.shape == (24, 36, 3)
    assert (tmp_path / 'Set5' / 'LRbicx2' / 'baby.png').is_file() and not (tmp_path / 'Set5' / 'LRbicx3').exists()


def test_scales_prepared_one_at_a_time_share_the_hr_lmdb_until_the_images_change(demo_data, tmp_path, monkeypatch,
                                                                                 capsys):
    hr = tmp_path / 'HR'
    hr.mkdir()
    photo = cv2.imread(str(demo_data / 'train' / 'HR' / 'astronaut.png'))[:240, :240]
    cv2.imwrite(str(hr / '0001.png'), photo)

    def prepare(scale):
        monkeypatch.setattr(sys, 'argv', ['prepare_dataset.py', '--hr', str(hr), '--scale', scale, '--out',
                                          str(tmp_path / 'out'), '--name', 'D', '--crop-size', '120', '--step', '120',
                                          '--workers', '1'])
        runpy.run_path(str(REPO / 'scripts' / 'prepare_dataset.py'), run_name='__main__')
        return capsys.readouterr().out

    prepare('4')
    assert 'D_HR_sub.lmdb is up to date' in prepare('2')  # BasicSR's writer alone would exit here
    assert (tmp_path / 'out' / 'D_LR_bicubic_X2_sub.lmdb' / 'meta_info.txt').is_file()
    cv2.imwrite(str(hr / '0001.png'), 255 - photo)  # same name and size, other pixels
    assert 'up to date' not in prepare('2')
    hr_sub = PairedImageDataset({'phase': 'val', 'scale': 2, 'io_backend': {'type': 'lmdb'}, 'filename_tmpl': '{}',
                                 'dataroot_gt': str(tmp_path / 'out' / 'D_HR_sub.lmdb'),
                                 'dataroot_lq': str(tmp_path / 'out' / 'D_LR_bicubic_X2_sub.lmdb')})
    first = hr_sub[0]['gt'].numpy().transpose(1, 2, 0)[..., ::-1]  # RGB CHW [0, 1] -> BGR HWC
    assert np.allclose(first * 255, (255 - photo)[:120, :120], atol=0.5)
