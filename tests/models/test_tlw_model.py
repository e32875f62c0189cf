"""TLWModel (Algorithm 1) and UDLModel through BasicSR's model API and the real CLI."""
import re
from pathlib import Path

import pytest
import torch
from basicsr.models import build_model
from conftest import (PYTHON, free_port, load_params, run_cli, tiny_options, training_log, write_options)
from tensorboard.backend.event_processing.event_accumulator import IMAGES, EventAccumulator

from losses_plugin.models.tlw_model import k_at_epoch


def tlw_options(demo_data, name, **train_overrides):
    opt = tiny_options(demo_data, name, **train_overrides)
    opt['model_type'] = 'TLWModel'
    opt['network_w'] = {'type': 'TLWWeightingNet', 'num_feat': 8}
    opt['train']['pixel_opt'] = {'type': 'TLWLoss', 'base': 'l1'}
    opt['train']['optim_w'] = {'type': 'Adam', 'lr': 1e-3, 'betas': [0.5, 0.999]}
    opt['train']['tlw'] = {'judge': {'type': 'ms_ssim'}, 'tau': 1}  # k moves visibly within a few epochs
    return opt


def in_process(opt, tmp_path):
    opt = dict(opt, is_train=True, dist=False, rank=0, world_size=1, num_gpu=0)
    opt['path'] = dict(opt['path'], experiments_root=str(tmp_path), models=str(tmp_path / 'models'),
                       training_states=str(tmp_path / 'states'))
    for key in ('models', 'training_states'):
        Path(opt['path'][key]).mkdir(parents=True, exist_ok=True)
    return build_model(opt)


def snapshot(net):
    return {k: v.detach().clone() for k, v in net.state_dict().items()}


def test_one_em_iteration_changes_both_networks_and_logs_its_terms(demo_data, tmp_path):
    torch.manual_seed(0)
    model = in_process(tlw_options(demo_data, 'em'), tmp_path)
    model.feed_data({'lq': torch.rand(2, 3, 8, 8), 'gt': torch.rand(2, 3, 32, 32)})
    before_g, before_w = snapshot(model.net_g), snapshot(model.net_w)
    model.set_epoch(3)
    model.optimize_parameters(1)
    for before, net in ((before_g, model.net_g), (before_w, model.net_w)):
        after = net.state_dict()
        assert any(not torch.equal(before[k], after[k]) for k in before if after[k].is_floating_point())
    log = model.get_current_log()
    assert set(log) == {'l_pix', 'l_w', 'wc', 'k'} and log['k'] == pytest.approx(k_at_epoch(3, tau=1))
    assert model.weight_samples.shape == (3, 2, 3, 32, 32)  # T = 3 samples weight the SR loss
    assert not any(p.requires_grad for p in model.judge.parameters())
    model.save(0, 1)
    saved = torch.load(tmp_path / 'models' / 'net_w_1.pth', weights_only=True)['params']
    assert saved.keys() == model.net_w.state_dict().keys()  # the judge is not saved with it
    state = torch.load(tmp_path / 'states' / '1.state', weights_only=False)
    assert len(state['optimizers']) == len(state['schedulers']) == 2


def test_wrong_loss_and_missing_options_are_clear_errors(demo_data, tmp_path):
    opt = tlw_options(demo_data, 'bad')
    opt['train']['pixel_opt'] = {'type': 'L1Loss'}
    with pytest.raises(ValueError, match='train.pixel_opt must be a TLWLoss'):
        in_process(opt, tmp_path)
    opt = tlw_options(demo_data, 'bad')
    del opt['train']['optim_w']
    with pytest.raises(ValueError, match='train.optim_w'):
        in_process(opt, tmp_path)
    opt = tlw_options(demo_data, 'bad')
    opt['train']['tlw']['k_0'] = 0.5
    with pytest.raises(ValueError, match='unknown train.tlw option.*k_0'):
        in_process(opt, tmp_path)


def resumable(demo_data, name, total_iter):
    # 12 samples / batch 2 = 6 iterations per epoch; checkpoint at 4, epoch boundary at 6
    opt = tlw_options(demo_data, name, total_iter=total_iter)
    opt['datasets']['train']['num_worker_per_gpu'] = 1
    opt['logger']['save_checkpoint_freq'] = 4
    opt['train']['scheduler_w'] = {'type': 'MultiStepLR', 'milestones': [5], 'gamma': 0.1}
    return opt


@pytest.mark.slow
def test_resume_continues_identically_including_net_w_and_its_optimiser(demo_data, tmp_path):
    run_cli(['train', '-opt', write_options(resumable(demo_data, 'straight', 9), tmp_path / 'straight.yml')],
            cwd=tmp_path)
    run_cli(['train', '-opt', write_options(resumable(demo_data, 'resumed', 6), tmp_path / 'resumed.yml')],
            cwd=tmp_path)
    run_cli(['train', '-opt', write_options(resumable(demo_data, 'resumed', 9), tmp_path / 'resumed.yml'),
             '--auto_resume'], cwd=tmp_path)
    models = tmp_path / 'experiments'
    assert 'Resuming training from iter: 4.' in training_log(models / 'resumed')
    for net in ('net_g', 'net_w'):
        a = load_params(models / 'straight' / 'models' / f'{net}_latest.pth')
        b = load_params(models / 'resumed' / 'models' / f'{net}_latest.pth')
        assert all(torch.equal(a[k], b[k]) for k in a), f'{net} differs after resume'
    states = [torch.load(models / run / 'training_states' / '8.state', weights_only=False) for run in
              ('straight', 'resumed')]
    for a, b in zip(states[0]['optimizers'][1]['state'].values(), states[1]['optimizers'][1]['state'].values()):
        assert torch.equal(a['exp_avg'], b['exp_avg']) and torch.equal(a['exp_avg_sq'], b['exp_avg_sq'])
    assert states[1]['schedulers'][1]['_last_lr'] == pytest.approx([1e-4])  # net_w's own milestone at 5
    # k follows the epoch: k0 in epoch 0, the schedule's value in epoch 1 (iterations 7-12)
    log = training_log(models / 'straight')
    k_by_iter = {int(i): float(k) for i, k in re.findall(r'iter:\s+(\d+),.* k: ([0-9.e+-]+)', log)}
    assert k_by_iter[1] == pytest.approx(0.3) and k_by_iter[7] == pytest.approx(k_at_epoch(1, tau=1), rel=1e-4)


@pytest.mark.slow
def test_torchrun_keeps_net_w_identical_across_ranks(demo_data, tmp_path):
    opt = tlw_options(demo_data, 'ddp', total_iter=3)
    torchrun = [str(Path(PYTHON).parent / 'torchrun'), '--nproc_per_node=2', f'--master_port={free_port()}']
    run_cli(['train', '-opt', write_options(opt, tmp_path / 'ddp.yml'), '--launcher', 'pytorch'], cwd=tmp_path,
            launcher=torchrun)
    log = training_log(tmp_path / 'experiments' / 'ddp')
    assert 'World size: 2' in log
    assert re.search(r'net_g parameters identical on all 2 ranks', log)
    assert re.search(r'net_w parameters identical on all 2 ranks', log), log[-3000:]


@pytest.mark.slow
def test_training_logs_the_sampled_weights_to_tensorboard(demo_data, tmp_path):
    opt = tlw_options(demo_data, 'tlw_maps', total_iter=2)
    opt['val']['val_freq'] = 2
    opt['logger'].update(use_tb_logger=True, log_weight_maps=True)
    run_cli(['train', '-opt', write_options(opt, tmp_path / 'maps.yml')], cwd=tmp_path)
    events = EventAccumulator(str(tmp_path / 'tb_logger' / 'tlw_maps'), size_guidance={IMAGES: 0}).Reload()
    assert {'weight_maps/tlw_mean', 'weight_maps/tlw_sample', 'weight_maps/gt'} <= set(events.Tags()['images'])


@pytest.mark.slow
def test_udl_stage_esu_then_stage_udl_with_the_frozen_estimator(demo_data, tmp_path):
    esu = tiny_options(demo_data, 'esu', total_iter=2)
    esu['model_type'] = 'UDLModel'
    esu['network_g'] = {'type': 'UncertaintySRNet', 'backbone': esu['network_g'], 'num_feat': 8}
    esu['train']['pixel_opt'] = {'type': 'UDLLoss', 'stage': 'esu'}
    run_cli(['train', '-opt', write_options(esu, tmp_path / 'esu.yml')], cwd=tmp_path)
    checkpoint = tmp_path / 'experiments' / 'esu' / 'models' / 'net_g_latest.pth'
    assert {k.split('.')[0] for k in load_params(checkpoint)} == {'net', 'head'}

    udl = tiny_options(demo_data, 'udl', total_iter=2)
    udl['model_type'] = 'UDLModel'
    udl['train']['pixel_opt'] = {'type': 'UDLLoss', 'stage': 'udl'}
    udl['train']['uncertainty_estimator'] = {'network': esu['network_g'], 'pretrain_path': 'missing.pth'}
    result = run_cli(['train', '-opt', write_options(udl, tmp_path / 'udl.yml')], cwd=tmp_path, check=False)
    assert result.returncode == 2
    assert "train.uncertainty_estimator.pretrain_path: 'missing.pth' does not exist" in result.stderr
    assert 'train the UDL stage esu first' in result.stderr
    udl['train']['uncertainty_estimator']['pretrain_path'] = str(checkpoint)
    run_cli(['train', '-opt', write_options(udl, tmp_path / 'udl.yml')], cwd=tmp_path)
    log = training_log(tmp_path / 'experiments' / 'udl')
    assert 'iter:       2' in log and 'l_pix' in log
    saved = load_params(tmp_path / 'experiments' / 'udl' / 'models' / 'net_g_latest.pth')
    assert not any(k.startswith('head') for k in saved)  # only the trained EDSR; the estimator is not saved


@pytest.mark.slow
def test_missing_lpips_weights_end_the_cli_with_one_clear_line(demo_data, tmp_path):
    opt = tlw_options(demo_data, 'lpips', total_iter=1)
    opt['train']['tlw']['judge'] = {'type': 'lpips'}
    env_home = tmp_path / 'torch_home'
    result = run_cli(['train', '-opt', write_options(opt, tmp_path / 'lpips.yml')], cwd=tmp_path, check=False,
                     env={'TORCH_HOME': str(env_home)})
    assert result.returncode == 2
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith('basicsr train: error: TLW judge lpips: the VGG16 backbone weights') and str(env_home) in last
