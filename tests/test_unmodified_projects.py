"""Existing BasicSR projects, unchanged: one `type:` in their YAML and their own, unmodified entry points train.

Real-ESRGAN 0.3.0 (installed with `--no-deps` by scripts/setup_env.sh) runs its own `realesrgan/train.py` and
BasicSR runs its own `basicsr/train.py` and `basicsr/test.py`, the way their READMEs say (`python
realesrgan/train.py -opt options/...` from the project folder, which here holds a link to the installed
package, not a copy). Nothing imports losses_plugin: the start-up hook (losses_plugin_shim.pth) resolves our
names on the first registry lookup. With the hook turned off (LOSSES_PLUGIN_NO_REGISTRY_HOOK=1) the same runs
stop with BasicSR's KeyError, which is what each test would see without the hook.
"""
import importlib.util
import os
import subprocess
from pathlib import Path

import pytest
import yaml
from conftest import PYTHON, training_log

pytestmark = pytest.mark.slow

# Real-ESRGAN's options/finetune_realesrgan_x4plus_pairdata.yml as a user has it, shrunk to seconds on CPU:
# its compact generator and U-Net discriminator, its paired dataset, BasicSR's ESRGANModel (RealESRGANModel
# calls .cuda() in its constructor), no perceptual loss (its VGG19 weights cannot be downloaded here).
REALESRGAN_OPTIONS = """
name: RealESRGAN_user_project
model_type: ESRGANModel
scale: 4
num_gpu: 0
manual_seed: 0
datasets:
  train:
    name: DIV2K
    type: RealESRGANPairedDataset
    dataroot_gt: datasets/DF2K/DIV2K_train_HR_sub
    dataroot_lq: datasets/DF2K/DIV2K_train_LR_bicubic_X4_sub
    io_backend:
      type: disk
    gt_size: 32
    use_hflip: true
    use_rot: false
    num_worker_per_gpu: 0
    batch_size_per_gpu: 2
    dataset_enlarge_ratio: 1
    prefetch_mode: ~
  val:
    name: validation
    type: PairedImageDataset
    dataroot_gt: datasets/Set5/GTmod12
    dataroot_lq: datasets/Set5/LRbicx4
    io_backend:
      type: disk
network_g:
  type: SRVGGNetCompact
  num_in_ch: 3
  num_out_ch: 3
  num_feat: 8
  num_conv: 2
  upscale: 4
  act_type: prelu
network_d:
  type: UNetDiscriminatorSN
  num_in_ch: 3
  num_feat: 8
  skip_connection: true
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
  optim_d:
    type: Adam
    lr: !!float 1e-4
    weight_decay: 0
    betas: [0.9, 0.99]
  scheduler:
    type: MultiStepLR
    milestones: [400000]
    gamma: 0.5
  total_iter: 2
  warmup_iter: -1
  pixel_opt:
    type: L1Loss
    loss_weight: 1.0
    reduction: mean
  gan_opt:
    type: GANLoss
    gan_type: vanilla
    real_label_val: 1.0
    fake_label_val: 0.0
    loss_weight: !!float 1e-1
  net_d_iters: 1
  net_d_init_iters: 0
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

TINY_EDSR = {'type': 'EDSR', 'num_in_ch': 3, 'num_out_ch': 3, 'num_feat': 8, 'num_block': 1, 'upscale': 4,
             'res_scale': 1, 'img_range': 255.0, 'rgb_mean': [0.4488, 0.4371, 0.4040]}
ADAM = {'type': 'Adam', 'lr': 1e-4, 'weight_decay': 0, 'betas': [0.9, 0.99]}
NO_HOOK = {'LOSSES_PLUGIN_NO_REGISTRY_HOOK': '1'}


def project_folder(tmp_path, package):
    """A project folder holding the installed folder of ``package`` (found, not imported: realesrgan would
    register its classes in this test process) as a link, so ``python <package>/train.py`` runs the package's
    own file and its experiments go under the project folder, as from a checkout. Real-ESRGAN is a test
    dependency: scripts/setup_env.sh installs realesrgan 0.3.0 --no-deps."""
    spec = importlib.util.find_spec(package)
    assert spec is not None, f'{package} is not installed (scripts/setup_env.sh installs it)'
    project = tmp_path / 'project'
    project.mkdir(exist_ok=True)
    link = project / package
    if not link.exists():
        link.symlink_to(Path(spec.origin).parent, target_is_directory=True)
    return project


def with_demo_data(opt, demo_data):
    for phase, split in (('train', 'train'), ('val', 'val')):
        opt['datasets'][phase].update(dataroot_gt=str(demo_data / split / 'HR'),
                                      dataroot_lq=str(demo_data / split / 'LR_bicubic' / 'X4'))
    return opt


def run_script(project, script, opt, env=None, check=True):
    """``python SCRIPT -opt options/NAME.yml`` in ``project``, with nothing but PATH, one thread and ``env``."""
    options = project / 'options' / f"{opt['name']}.yml"
    options.parent.mkdir(exist_ok=True)
    options.write_text(yaml.safe_dump(opt, sort_keys=False))
    result = subprocess.run([PYTHON, script, '-opt', str(options.relative_to(project))], cwd=project,
                            capture_output=True, text=True, timeout=600,
                            env={'OMP_NUM_THREADS': '1', 'PATH': os.environ.get('PATH', '/usr/bin:/bin'), **(env or {})})
    if check:
        assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-3000:]
    return result


def realesrgan_options(demo_data, name, pixel_opt):
    opt = with_demo_data(yaml.safe_load(REALESRGAN_OPTIONS), demo_data)
    opt['name'] = name
    opt['train']['pixel_opt'] = pixel_opt
    return opt


@pytest.mark.parametrize('pixel_opt', [{'type': 'SPLoss', 'alpha': 2.0},
                                       {'type': 'MSSSIML1Loss', 'padding': 'reflect'}], ids=lambda o: o['type'])
def test_realesrgans_own_train_py_trains_with_our_pixel_loss_from_yaml_alone(pixel_opt, demo_data, tmp_path):
    project = project_folder(tmp_path, 'realesrgan')
    opt = realesrgan_options(demo_data, f"RealESRGAN_{pixel_opt['type']}", pixel_opt)
    run_script(project, 'realesrgan/train.py', opt)
    experiment = project / 'experiments' / opt['name']
    log = training_log(experiment)
    assert f"Loss [{pixel_opt['type']}] is created." in log
    assert 'Network [SRVGGNetCompact] is created.' in log and 'Network [UNetDiscriminatorSN] is created.' in log
    assert 'Dataset [RealESRGANPairedDataset] - DIV2K is built.' in log and 'Model [ESRGANModel] is created.' in log
    assert 'iter:       2' in log and 'l_g_pix' in log and 'l_d_real' in log and '# psnr:' in log
    assert (experiment / 'models' / 'net_g_latest.pth').is_file()


def test_without_the_hook_the_same_runs_stop_with_basicsrs_keyerror(demo_data, tmp_path):
    project = project_folder(tmp_path, 'realesrgan')
    opt = realesrgan_options(demo_data, 'RealESRGAN_no_hook', {'type': 'SPLoss', 'alpha': 2.0})
    result = run_script(project, 'realesrgan/train.py', opt, env=NO_HOOK, check=False)
    assert result.returncode == 1
    assert result.stderr.strip().splitlines()[-1] == 'KeyError: "No object named \'SPLoss\' found in \'loss\' registry!"'

    project = project_folder(tmp_path, 'basicsr')
    result = run_script(project, 'basicsr/train.py', tlw_options(demo_data), env=NO_HOOK, check=False)
    assert result.returncode == 1
    assert result.stderr.strip().splitlines()[-1] == (
        'KeyError: "No object named \'TLWModel\' found in \'model\' registry!"')


def test_a_misspelt_type_names_the_close_match_in_a_projects_own_train_py(demo_data, tmp_path):
    project = project_folder(tmp_path, 'realesrgan')
    opt = realesrgan_options(demo_data, 'RealESRGAN_typo', {'type': 'SPLos', 'alpha': 2.0})
    result = run_script(project, 'realesrgan/train.py', opt, check=False)
    assert result.returncode == 1
    assert result.stderr.strip().splitlines()[-1] == (
        'KeyError: "No object named \'SPLos\' found in \'loss\' registry! (close matches: SPLoss, MSELoss, SSIMLoss)"')


def tlw_options(demo_data):
    opt = with_demo_data(yaml.safe_load(REALESRGAN_OPTIONS), demo_data)
    opt.pop('network_d')
    opt['datasets']['train']['type'] = 'PairedImageDataset'
    opt.update(name='TLW_basicsr_train', model_type='TLWModel', network_g=dict(TINY_EDSR),
               network_w={'type': 'TLWWeightingNet', 'num_in_ch': 3, 'num_feat': 4})
    train = opt['train']
    for key in ('optim_d', 'gan_opt', 'net_d_iters', 'net_d_init_iters'):
        train.pop(key)
    train.update(ema_decay=0, pixel_opt={'type': 'TLWLoss'}, optim_w=dict(ADAM), tlw={'judge': {'type': 'l1'}})
    return opt


def test_basicsrs_own_train_py_trains_tlw_and_fgd_models_and_its_test_py_tests_fgd(demo_data, tmp_path):
    project = project_folder(tmp_path, 'basicsr')
    tlw = tlw_options(demo_data)
    run_script(project, 'basicsr/train.py', tlw)
    log = training_log(project / 'experiments' / tlw['name'])
    assert 'Model [TLWModel] is created.' in log and 'Network [TLWWeightingNet] is created.' in log
    assert 'iter:       2' in log and 'l_w' in log and '# psnr:' in log

    fgd = dict(tlw, name='FGD_basicsr_train', model_type='FGDModel',
               network_g={'type': 'FGDNet', 'backbone': dict(TINY_EDSR)})
    fgd.pop('network_w')
    fgd['train'] = {k: v for k, v in tlw['train'].items() if k not in ('optim_w', 'tlw')}
    fgd['train']['pixel_opt'] = {'type': 'FineGrainedDynamicLoss'}
    run_script(project, 'basicsr/train.py', fgd)
    experiment = project / 'experiments' / fgd['name']
    log = training_log(experiment)
    assert 'Model [FGDModel] is created.' in log and 'Loss [FineGrainedDynamicLoss] is created.' in log
    assert 'iter:       2' in log and 'l_c1' in log

    test = {'name': 'FGD_basicsr_test', 'model_type': 'FGDModel', 'scale': 4, 'num_gpu': 0,
            'datasets': {'test_1': dict(fgd['datasets']['val'], name='DemoTest')}, 'network_g': fgd['network_g'],
            'path': {'pretrain_network_g': str(experiment / 'models' / 'net_g_latest.pth'), 'strict_load_g': True},
            'val': {'save_img': False, 'metrics': {'ms_ssim': {'type': 'calculate_ms_ssim', 'crop_border': 4}}}}
    run_script(project, 'basicsr/test.py', test)
    log = '\n'.join(p.read_text() for p in (project / 'results' / test['name']).glob('test_*.log'))
    assert 'Model [FGDModel] is created.' in log and '# ms_ssim:' in log


def test_basicsrs_own_train_py_trains_srmodel_whose_loss_imports_us_while_it_is_built(demo_data, tmp_path):
    """SRModel is BasicSR's, so the first of our names is its pixel loss: losses_plugin is imported (and patches
    SRModel) inside the model's constructor, and the model built before the patch trains as BasicSR's."""
    project = project_folder(tmp_path, 'basicsr')
    opt = tlw_options(demo_data)
    opt.pop('network_w')
    opt.update(name='SPLoss_basicsr_train', model_type='SRModel')
    opt['train'] = {k: v for k, v in opt['train'].items() if k not in ('optim_w', 'tlw')}
    opt['train']['pixel_opt'] = {'type': 'SPLoss', 'alpha': 2.0}
    run_script(project, 'basicsr/train.py', opt)
    log = training_log(project / 'experiments' / opt['name'])
    assert 'Model [SRModel] is created.' in log and 'Loss [SPLoss] is created.' in log
    assert 'iter:       2' in log and 'l_pix' in log and '# psnr:' in log
