"""SyntheticDegradationDataset: GT from disk or LMDB, noise made on the fly, fixed for validation."""
import cv2
import numpy as np
import pytest
import torch
from basicsr.data import build_dataset
from basicsr.utils.lmdb_util import make_lmdb_from_imgs

from losses_plugin.data.degradations import build_degradations
from losses_plugin.data.deterministic_sampling import KeySeededDataset


def options(root, phase='val', backend='disk', **extra):
    opt = {'name': 'noisy', 'type': 'SyntheticDegradationDataset', 'phase': phase, 'dataroot_gt': str(root),
           'io_backend': {'type': backend}, 'degradations': [{'type': 'gaussian_noise', 'sigma': 25}]}
    opt.update(extra)
    return opt


def test_validation_noise_is_fixed_per_index_and_has_the_right_level(demo_data):
    first, again = build_dataset(options(demo_data / 'val' / 'HR')), build_dataset(options(demo_data / 'val' / 'HR'))
    a, b = first[0], again[0]
    assert torch.equal(a['lq'], b['lq']) and a['gt_path'].endswith('chelsea.png')
    assert a['lq_path'] == a['gt_path']  # BasicSR's validation names the saved images after lq_path
    assert (a['lq'] - a['gt']).std().item() * 255 == pytest.approx(25, rel=0.02)
    # seeded by (seed, index): the second image's noise is not the first one's draws again, which would
    # start alike (both fill the first row from the same stream), so compare the first pixels
    noise0, noise1 = a['lq'] - a['gt'], first[1]['lq'] - first[1]['gt']
    assert not torch.allclose(noise0[..., 0, :10], noise1[..., 0, :10], atol=1e-3)
    other_seed = build_dataset(options(demo_data / 'val' / 'HR', seed=1))[0]
    assert not torch.equal(other_seed['lq'], a['lq'])


def test_training_crops_follow_the_sample_seed_and_y_channel(demo_data):
    data = KeySeededDataset(build_dataset(options(demo_data / 'train' / 'HR', phase='train', gt_size=32,
                                                  use_hflip=True, use_rot=True, color='y')), seed=5)
    a, b, c = data[(0, 3)], data[(0, 3)], data[(1, 3)]
    assert a['gt'].shape == (1, 32, 32) and a['lq'].shape == (1, 32, 32)
    assert torch.equal(a['lq'], b['lq']) and not torch.equal(a['lq'], c['lq'])


def test_lmdb_and_disk_give_the_same_samples(demo_data, tmp_path):
    folder = demo_data / 'val' / 'HR'
    names = sorted(p.name for p in folder.iterdir())
    make_lmdb_from_imgs(str(folder), str(tmp_path / 'val.lmdb'), names, [n[:-4] for n in names])
    disk = build_dataset(options(folder))
    lmdb = build_dataset(options(tmp_path / 'val.lmdb', backend='lmdb'))
    assert len(disk) == len(lmdb) == 2
    for i in range(2):
        assert torch.equal(disk[i]['gt'], lmdb[i]['gt']) and torch.equal(disk[i]['lq'], lmdb[i]['lq'])


def test_sigma_range_draws_a_level_per_image():
    rng = np.random.default_rng(0)
    degrade, = build_degradations([{'type': 'gaussian_noise', 'sigma_range': [10, 50]}])
    levels = [np.std(degrade(np.zeros((64, 64, 3), np.float32), rng)) * 255 for _ in range(20)]
    assert 10 * 0.9 < min(levels) < max(levels) < 50 * 1.1 and np.std(levels) > 5


@pytest.mark.parametrize('specs, message', [
    ([{'type': 'motion_blur'}], "'motion_blur' is not a degradation; known: gaussian_noise, bayer_noise_demosaic, jpeg"),
    ([{'type': 'gaussian_noise'}], 'give exactly one of sigma and sigma_range'),
    ([{'type': 'gaussian_noise', 'sigma': -1}], 'sigma: expected a number >= 0'),
    ([{'type': 'gaussian_noise', 'sigma': 5, 'mean': 1}], "unexpected keyword argument 'mean'"),
    ([], 'expected a non-empty list'),
])
def test_invalid_degradations(specs, message):
    with pytest.raises(ValueError, match=message):
        build_degradations(specs)


def test_tensors_are_rgb_and_y_is_bt601_luma_of_the_image(demo_data):
    """The GT read through cv2 (BGR) comes out RGB, as BasicSR's paired datasets hand it; ``color: y``
    gives Y = (16 + 65.481 R + 128.553 G + 24.966 B) / 255 with R, G, B in [0, 1]. The reference reads
    the PNG with PIL, which gives RGB."""
    from PIL import Image
    path = demo_data / 'val' / 'HR' / 'chelsea.png'
    rgb = torch.from_numpy(np.asarray(Image.open(path).convert('RGB'), np.float32) / 255).permute(2, 0, 1)
    clean = [{'type': 'gaussian_noise', 'sigma': 0}]
    sample = build_dataset(options(demo_data / 'val' / 'HR', degradations=clean))[0]
    assert sample['gt_path'].endswith('chelsea.png') and torch.equal(sample['lq'], sample['gt'])
    assert torch.allclose(sample['gt'], rgb, atol=1e-6)
    y = build_dataset(options(demo_data / 'val' / 'HR', degradations=clean, color='y'))[0]['gt']
    expected = (16 + 65.481 * rgb[0] + 128.553 * rgb[1] + 24.966 * rgb[2]) / 255
    assert y.shape == (1, *rgb.shape[1:]) and torch.allclose(y[0], expected, atol=1e-5)


def test_training_crops_are_windows_of_the_image_at_drawn_positions(demo_data):
    """Without augmentation a training GT is a gt_size window of the image, at a position the sample
    seed draws: different keys of one image give windows at different places."""
    dataset = build_dataset(options(demo_data / 'train' / 'HR', phase='train', gt_size=16))
    data = KeySeededDataset(dataset, seed=5)
    rgb = cv2.cvtColor(cv2.imread(dataset.paths[0]), cv2.COLOR_BGR2RGB)
    full = torch.from_numpy(rgb.astype(np.float32) / 255).permute(2, 0, 1)
    positions = set()
    for epoch in range(4):
        crop = data[(epoch, 0)]['gt']
        candidates = torch.nonzero((full[0] == crop[0, 0, 0]) & (full[1] == crop[1, 0, 0]))
        found = [(y, x) for y, x in candidates.tolist() if torch.equal(full[:, y:y + 16, x:x + 16], crop)]
        assert found, epoch
        positions.add(found[0])
    assert len(positions) > 1


def dihedral(crop, hflip, vflip, rot90):
    """BasicSR's augment of an HWC image, on a CHW tensor: horizontal flip, vertical flip, then H-W transpose."""
    crop = crop.flip(-1) if hflip else crop
    crop = crop.flip(-2) if vflip else crop
    return crop.transpose(-2, -1) if rot90 else crop


@pytest.mark.parametrize('use_hflip, use_rot', [(True, False), (False, True), (True, True)])
def test_augmentation_flips_and_rotates_the_same_window_as_the_options_allow(demo_data, use_hflip, use_rot):
    """A key draws the same window with or without augmentation; use_hflip adds horizontal flips only,
    use_rot vertical flips and transposes only, and over 16 keys every allowed transform occurs."""
    root = demo_data / 'train' / 'HR'
    plain = KeySeededDataset(build_dataset(options(root, phase='train', gt_size=16)), seed=5)
    augmented = KeySeededDataset(build_dataset(options(root, phase='train', gt_size=16, use_hflip=use_hflip,
                                                       use_rot=use_rot)), seed=5)
    allowed = [(h, v, r) for h in (False, use_hflip) for v in (False, use_rot) for r in (False, use_rot)]
    seen = set()
    for position in range(16):
        window, crop = plain[(0, position)]['gt'], augmented[(0, position)]['gt']
        matches = {t for t in allowed if torch.equal(dihedral(window, *t), crop)}
        assert matches, position
        seen |= matches
    assert seen == set(allowed)


def test_meta_info_file_lists_the_images_by_name(demo_data, tmp_path):
    """``meta_info_file`` (BasicSR's format: a name, optionally followed by a space and the shape) picks and
    orders the images under dataroot_gt; blank lines are skipped."""
    root = demo_data / 'val' / 'HR'
    names = sorted(p.name for p in root.iterdir())
    meta = tmp_path / 'meta_info.txt'
    meta.write_text(f'{names[1]} (10,10,3)\n\n{names[0]}\n')
    dataset = build_dataset(options(root, meta_info_file=str(meta)))
    assert dataset.paths == [f'{root}/{names[1]}', f'{root}/{names[0]}']
    assert torch.equal(dataset[0]['gt'], build_dataset(options(root))[1]['gt'])


def test_training_noise_follows_the_global_generator_not_the_index(tmp_path):
    """Training draws its degradation from NumPy's global generator (seeded per sample by the loader), so the
    same image gets new noise every epoch; validation's (seed, index) generator would repeat it."""
    cv2.imwrite(str(tmp_path / 'a.png'), np.full((32, 32, 3), 128, np.uint8))
    dataset = build_dataset(options(tmp_path, phase='train', gt_size=32))  # the whole image: no crop drawn
    draws = []
    for seed in (0, 1, 0):
        np.random.seed(seed)
        draws.append(dataset[0]['lq'])
    assert all(draw.shape == (3, 32, 32) for draw in draws)  # (a crop as large as the image is allowed)
    assert torch.equal(draws[0], draws[2]) and not torch.allclose(draws[0], draws[1], atol=1e-3)


def test_training_noise_streams_are_not_few(tmp_path):
    """Each training sample seeds its noise from the whole 32-bit range: 100 samples, 100 different noises."""
    cv2.imwrite(str(tmp_path / 'a.png'), np.full((8, 8, 3), 128, np.uint8))
    dataset = build_dataset(options(tmp_path, phase='train', gt_size=8))
    noises = set()
    for seed in range(100):
        np.random.seed(seed)
        noises.add(dataset[0]['lq'].numpy().tobytes())
    assert len(noises) == 100
