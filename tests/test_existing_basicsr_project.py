"""The promise to existing BasicSR projects: `import losses_plugin`, change one `type:`, and BasicSR's
own, unmodified `basicsr.train.train_pipeline` trains with our loss.

The options are BasicSR's EDSR training file as a user has it (options/train/EDSR/train_EDSR_Mx4.yml of
BasicSR's published layout: SRModel, EDSR, PairedImageDataset, Adam, MultiStepLR, L1Loss), shrunk to a
few seconds; only pixel_opt.type and the data paths change.
"""
import pytest
import torch
import torchvision
import yaml
from conftest import PYTHON, run_cli  # noqa: F401  (run_cli's environment conventions)

pytestmark = pytest.mark.slow

BASICSR_EDSR_OPTIONS = """
name: EDSR_Mx4_user_project
model_type: SRModel
scale: 4
num_gpu: 0
manual_seed: 0
datasets:
  train:
    name: DIV2K
    type: PairedImageDataset
    dataroot_gt: datasets/DF2K/DIV2K_train_HR_sub
    dataroot_lq: datasets/DF2K/DIV2K_train_LR_bicubic_X4_sub
    filename_tmpl: '{}'
    io_backend:
      type: disk
    gt_size: 32
    use_hflip: true
    use_rot: true
    num_worker_per_gpu: 0
    batch_size_per_gpu: 2
    dataset_enlarge_ratio: 1
    prefetch_mode: ~
  val:
    name: Set5
    type: PairedImageDataset
    dataroot_gt: datasets/Set5/GTmod12
    dataroot_lq: datasets/Set5/LRbicx4
    io_backend:
      type: disk
network_g:
  type: EDSR
  num_in_ch: 3
  num_out_ch: 3
  num_feat: 8
  num_block: 1
  upscale: 4
  res_scale: 1
  img_range: 255.
  rgb_mean: [0.4488, 0.4371, 0.4040]
path:
  pretrain_network_g: ~
  strict_load_g: true
  resume_state: ~
train:
  ema_decay: 0.999
  optim_g:
    type: Adam
    lr: !!float 1e-4
    weight_decay: 0
    betas: [0.9, 0.99]
  scheduler:
    type: MultiStepLR
    milestones: [200000]
    gamma: 0.5
  total_iter: 2
  warmup_iter: -1
  pixel_opt:
    type: L1Loss
    loss_weight: 1.0
    reduction: mean
val:
  val_freq: 2
  save_img: false
  metrics:
    psnr:
      type: calculate_psnr
      crop_border: 4
      test_y_channel: false
logger:
  print_freq: 1
  save_checkpoint_freq: !!float 5e3
  use_tb_logger: false
  wandb:
    project: ~
    resume_id: ~
dist_params:
  backend: nccl
  port: 29500
"""

# BasicSR's own entry point, untouched: the user's train.py with one added import
USER_TRAIN_PY = """
import os.path as osp
import losses_plugin  # the one line a BasicSR project adds
from basicsr.train import train_pipeline

if __name__ == '__main__':
    train_pipeline(osp.abspath(osp.dirname(__file__)))
"""


def user_project(tmp_path, demo_data, pixel_opt, **changes):
    opt = yaml.safe_load(BASICSR_EDSR_OPTIONS)
    opt['train']['pixel_opt'] = pixel_opt
    opt['datasets']['train'].update(dataroot_gt=str(demo_data / 'train' / 'HR'),
                                    dataroot_lq=str(demo_data / 'train' / 'LR_bicubic' / 'X4'))
    opt['datasets']['val'].update(dataroot_gt=str(demo_data / 'val' / 'HR'),
                                  dataroot_lq=str(demo_data / 'val' / 'LR_bicubic' / 'X4'))
    for key, value in changes.items():
        opt[key] = value
    (tmp_path / 'train.py').write_text(USER_TRAIN_PY)
    (tmp_path / 'options.yml').write_text(yaml.safe_dump(opt, sort_keys=False))
    return opt


def train_with_basicsr(tmp_path):
    import subprocess
    result = subprocess.run([PYTHON, 'train.py', '-opt', 'options.yml'], cwd=tmp_path, capture_output=True, text=True,
                            timeout=600, env={'OMP_NUM_THREADS': '1', 'PATH': '/usr/bin:/bin'})
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-3000:]
    return result


@pytest.mark.parametrize('pixel_opt', [{'type': 'SPLoss', 'alpha': 2.0}, {'type': 'AsymmetricLoss', 'base': 'l1'},
                                       {'type': 'SSIMLoss', 'sigma': 1.5}, {'type': 'MSSSIMLoss', 'padding': 'reflect'},
                                       {'type': 'MSSSIML1Loss', 'padding': 'reflect'}], ids=lambda o: o['type'])
def test_srmodel_trains_with_our_pixel_loss_through_basicsrs_own_pipeline(pixel_opt, demo_data, tmp_path):
    opt = user_project(tmp_path, demo_data, pixel_opt)
    train_with_basicsr(tmp_path)
    models = tmp_path / 'experiments' / opt['name'] / 'models'
    assert (models / 'net_g_latest.pth').is_file()
    log = ''.join(p.read_text() for p in (tmp_path / 'experiments' / opt['name']).glob('train_*.log'))
    assert f"Loss [{pixel_opt['type']}] is created." in log and 'iter:       2' in log and '# psnr:' in log


def test_esrgan_model_uses_sploss_as_its_pixel_loss(demo_data, tmp_path):
    # BasicSR's VGG perceptual loss loads ImageNet VGG19 weights, which cannot be downloaded here: the
    # file BasicSR looks for holds randomly initialised VGG19 weights instead (the run is about wiring).
    opt = user_project(tmp_path, demo_data, {'type': 'SPLoss', 'alpha': 2.0, 'loss_weight': 0.01},
                       model_type='ESRGANModel', name='ESRGAN_user_project',
                       network_d={'type': 'VGGStyleDiscriminator', 'num_in_ch': 3, 'num_feat': 8})
    opt['datasets']['train']['gt_size'] = 128  # VGGStyleDiscriminator takes 128x128
    opt['train'].update(optim_d={'type': 'Adam', 'lr': 1e-4, 'weight_decay': 0, 'betas': [0.9, 0.99]},
                        perceptual_opt={'type': 'PerceptualLoss', 'layer_weights': {'conv5_4': 1},
                                        'vgg_type': 'vgg19', 'use_input_norm': True, 'range_norm': False,
                                        'perceptual_weight': 1.0, 'style_weight': 0, 'criterion': 'l1'},
                        gan_opt={'type': 'GANLoss', 'gan_type': 'vanilla', 'real_label_val': 1.0,
                                 'fake_label_val': 0.0, 'loss_weight': 0.005},
                        net_d_iters=1, net_d_init_iters=0)
    (tmp_path / 'options.yml').write_text(yaml.safe_dump(opt, sort_keys=False))
    (tmp_path / 'experiments' / 'pretrained_models').mkdir(parents=True)
    torch.save(torchvision.models.vgg19(weights=None).state_dict(),
               tmp_path / 'experiments' / 'pretrained_models' / 'vgg19-dcbb9e9d.pth')
    train_with_basicsr(tmp_path)
    log = ''.join(p.read_text() for p in (tmp_path / 'experiments' / opt['name']).glob('train_*.log'))
    assert 'Loss [SPLoss] is created.' in log and 'l_g_pix' in log and 'l_g_percep' in log and 'l_d_real' in log
