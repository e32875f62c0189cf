"""Ground truth read through BasicSR's FileClient (disk or LMDB), input made from it on the fly."""
import numpy as np
from basicsr.data.data_util import paths_from_folder, paths_from_lmdb
from basicsr.data.transforms import augment
from basicsr.utils import FileClient, imfrombytes, img2tensor
from basicsr.utils.color_util import bgr2ycbcr
from basicsr.utils.registry import DATASET_REGISTRY
from torch.utils import data

from losses_plugin.checks import OptionError
from losses_plugin.data.degradations import apply_degradations, build_degradations

COLORS = ('rgb', 'y')


@DATASET_REGISTRY.register()
class SyntheticDegradationDataset(data.Dataset):
    """Pairs whose input is a degraded copy of the ground truth (denoising, demosaicking, JPEG, ...).

    Training samples draw their degradation from NumPy's global generator, so the sample seeding of
    ``basicsr train`` makes them reproducible; validation and test samples are seeded by
    ``(seed, index)``, so a validation set is the same every time.

    Args (dataset options in YAML):
        dataroot_gt (str): folder of images, or an ``.lmdb`` folder with ``io_backend: {type: lmdb}``.
        io_backend (dict): ``{type: disk}`` or ``{type: lmdb}``.
        meta_info_file (str, optional): list of file names under ``dataroot_gt`` (disk backend).
        degradations (list[dict]): e.g. ``[{type: gaussian_noise, sigma: 25}]``.
        color (str): 'rgb' (3 channels) or 'y' (the luma channel of YCbCr, 1 channel). Default: 'rgb'.
        gt_size (int): training crop size. use_hflip, use_rot (bool): training augmentation.
        seed (int): base of the validation seeds. Default: 0.
    """

    def __init__(self, opt):
        super().__init__()
        self.opt = opt
        self.io_backend_opt = dict(opt['io_backend'])
        self.file_client = None
        self.degradations = build_degradations(opt.get('degradations'), f"datasets.{opt.get('name')}.degradations")
        self.color = opt.get('color', 'rgb')
        if self.color not in COLORS:
            raise OptionError(f"datasets.{opt.get('name')}.color: expected one of {COLORS}, got {self.color!r}")
        root = opt['dataroot_gt']
        if self.io_backend_opt['type'] == 'lmdb':
            self.io_backend_opt.update(db_paths=[root], client_keys=['gt'])
            self.paths = paths_from_lmdb(root)
        elif opt.get('meta_info_file'):
            with open(opt['meta_info_file']) as f:
                self.paths = [f'{root}/{line.split(" ")[0].strip()}' for line in f if line.strip()]
        else:
            self.paths = paths_from_folder(root)

    def __len__(self):
        return len(self.paths)

    def _generator(self, index):
        if self.opt['phase'] == 'train':
            return np.random.default_rng(np.random.randint(0, 2**32, dtype=np.uint64))
        return np.random.default_rng([self.opt.get('seed', 0), index])

    def __getitem__(self, index):
        if self.file_client is None:
            backend = dict(self.io_backend_opt)
            self.file_client = FileClient(backend.pop('type'), **backend)
        path = self.paths[index]
        img_gt = imfrombytes(self.file_client.get(path, 'gt'), float32=True)
        if self.opt['phase'] == 'train':
            gt_size = self.opt['gt_size']
            h, w = img_gt.shape[:2]
            if h < gt_size or w < gt_size:
                raise ValueError(f'{path} ({h}x{w}) is smaller than gt_size {gt_size}')
            top, left = np.random.randint(0, h - gt_size + 1), np.random.randint(0, w - gt_size + 1)
            img_gt = augment(img_gt[top:top + gt_size, left:left + gt_size], self.opt.get('use_hflip', False),
                             self.opt.get('use_rot', False))
        if self.color == 'y':
            img_gt = bgr2ycbcr(img_gt, y_only=True)[..., None]
        img_gt = np.ascontiguousarray(img_gt, dtype=np.float32)
        img_lq = apply_degradations(img_gt, self.degradations, self._generator(index)).astype(np.float32)
        img_gt, img_lq = img2tensor([img_gt, img_lq], bgr2rgb=self.color == 'rgb', float32=True)
        return {'lq': img_lq, 'gt': img_gt, 'lq_path': path, 'gt_path': path}
