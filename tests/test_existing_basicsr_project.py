"""The promise to existing BasicSR projects: `import losses_plugin`, change one `type:`, and BasicSR's
own, unmodified `basicsr.train.train_pipeline` trains with our loss.

The options are BasicSR's EDSR training file as a user has it (options/train/EDSR/train_EDSR_Mx4.yml of
BasicSR's published layout: SRModel, EDSR, PairedImageDataset, Adam, MultiStepLR, L1Loss), shrunk to a
few seconds; only pixel_opt.type and the data paths change.
"""
import re
import subprocess

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


# --- the composite models under BasicSR's own loop ----------------------------------------------------------

TINY_EDSR = {'type': 'EDSR', 'num_in_ch': 3, 'num_out_ch': 3, 'num_feat': 8, 'num_block': 1, 'upscale': 4,
             'res_scale': 1, 'img_range': 255.0, 'rgb_mean': [0.4488, 0.4371, 0.4040]}
ADAM = {'type': 'Adam', 'lr': 1e-4, 'weight_decay': 0, 'betas': [0.9, 0.99]}


def tlw_project(tmp_path, demo_data, total_iter):
    opt = user_project(tmp_path, demo_data, {'type': 'TLWLoss'}, model_type='TLWModel', name='TLW_user_project',
                       network_w={'type': 'TLWWeightingNet', 'num_in_ch': 3, 'num_feat': 4})
    # 6 demo photographs in batches of 2: 3 iterations an epoch; tau 1 makes k move visibly from epoch to epoch
    opt['train'].update(total_iter=total_iter, optim_w=dict(ADAM), tlw={'judge': {'type': 'l1'}, 'tau': 1})
    opt['logger']['save_checkpoint_freq'] = 4
    opt['val']['val_freq'] = 4
    (tmp_path / 'options.yml').write_text(yaml.safe_dump(opt, sort_keys=False))
    return opt


def logged_iterations(log):
    """(epoch, iter, {name: value}) of every training-log line of BasicSR's MessageLogger."""
    rows = []
    for epoch, iteration, rest in re.findall(r'\[epoch:\s*(\d+), iter:\s*(\d+), lr:\(.*?\)\] (.*)', log):
        values = dict((k, float(v)) for k, v in re.findall(r'(\w+): ([-+\d.e]+)', rest))
        rows.append((int(epoch), int(iteration), values))
    return rows


def test_tlw_k_follows_basicsrs_own_epochs_also_after_resume_which_restores_net_w(demo_data, tmp_path):
    from losses_plugin.models.tlw_model import k_at_epoch
    opt = tlw_project(tmp_path, demo_data, total_iter=5)
    train_with_basicsr(tmp_path)
    experiment = tmp_path / 'experiments' / opt['name']
    first_log = ''.join(p.read_text() for p in experiment.glob('train_*.log'))
    assert '# psnr:' in first_log

    # resume from the state of iteration 4 through BasicSR's own loop, on to iteration 8
    (tmp_path / 'options.yml').write_text(yaml.safe_dump(dict(opt, train=dict(opt['train'], total_iter=8)),
                                                         sort_keys=False))
    result = subprocess.run([PYTHON, 'train.py', '-opt', 'options.yml', '--auto_resume'], cwd=tmp_path,
                            capture_output=True, text=True, timeout=600, env={'OMP_NUM_THREADS': '1',
                                                                               'PATH': '/usr/bin:/bin'})
    assert result.returncode == 0, result.stderr[-3000:]
    resumed_log = sorted(experiment.glob('train_*.log'))[-1].read_text()
    assert 'Resuming training from epoch: 1, iter: 4.' in resumed_log
    assert re.search(r'Loading TLWWeightingNet model from .*models/net_w_4\.pth', resumed_log)
    assert re.search(r'Loading EDSR model from .*models/net_g_4\.pth', resumed_log)

    first, resumed = logged_iterations(first_log), logged_iterations(resumed_log)
    assert [i for _, i, _ in first] == [1, 2, 3, 4, 5] and [i for _, i, _ in resumed] == [5, 6, 7, 8]
    assert [e for e, _, _ in first] == [0, 0, 0, 1, 1]  # 3 iterations an epoch
    for epoch, _, values in first:  # k is that of the epoch BasicSR's own loop is in
        assert values['k'] == pytest.approx(k_at_epoch(epoch, tau=1), abs=1e-4)
    # BasicSR's loop repeats an interrupted epoch from its start, so after resuming its epoch counter runs
    # behind the data seen; k follows the iteration, as in the uninterrupted run
    for _, iteration, values in resumed:
        assert values['k'] == pytest.approx(k_at_epoch((iteration - 1) // 3, tau=1), abs=1e-4)
    assert resumed[-1][2]['k'] > first[-1][2]['k']


def test_udl_stages_and_fgd_train_through_basicsrs_own_pipeline(demo_data, tmp_path):
    esu_net = {'type': 'UncertaintySRNet', 'backbone': dict(TINY_EDSR)}
    opt = user_project(tmp_path, demo_data, {'type': 'UDLLoss', 'stage': 'esu'}, model_type='UDLModel',
                       name='ESU_user_project', network_g=esu_net)
    train_with_basicsr(tmp_path)
    esu_weights = tmp_path / 'experiments' / 'ESU_user_project' / 'models' / 'net_g_latest.pth'
    assert esu_weights.is_file()

    opt = user_project(tmp_path, demo_data, {'type': 'UDLLoss', 'stage': 'udl'}, model_type='UDLModel',
                       name='UDL_user_project')
    opt['train']['uncertainty_estimator'] = {'network': esu_net, 'pretrain_path': str(esu_weights)}
    (tmp_path / 'options.yml').write_text(yaml.safe_dump(opt, sort_keys=False))
    train_with_basicsr(tmp_path)

    opt = user_project(tmp_path, demo_data, {'type': 'FineGrainedDynamicLoss'}, model_type='FGDModel',
                       name='FGD_user_project', network_g={'type': 'FGDNet', 'backbone': dict(TINY_EDSR)})
    opt['train'].update(amp={'dtype': 'bfloat16'}, grad_clip={'max_norm': 1.0}, non_finite={'max_skips': 2})
    (tmp_path / 'options.yml').write_text(yaml.safe_dump(opt, sort_keys=False))
    train_with_basicsr(tmp_path)
    logs = {name: ''.join(p.read_text() for p in (tmp_path / 'experiments' / name).glob('train_*.log'))
            for name in ('ESU_user_project', 'UDL_user_project', 'FGD_user_project')}
    for name, log in logs.items():
        rows = logged_iterations(log)
        assert [i for _, i, _ in rows] == [1, 2] and '# psnr:' in log, name
    assert all('s' in values for _, _, values in logged_iterations(logs['UDL_user_project']))
    assert all({'l_r', 'l_c1', 'l_c2'} <= set(values) for _, _, values in logged_iterations(logs['FGD_user_project']))
