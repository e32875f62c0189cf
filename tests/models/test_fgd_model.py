"""FGDModel: the Class-Module's area usage it logs (class_frac_<a>), what ClassSR's average loss does to it,
and, through the real CLI, training, logging, resuming and torchrun."""
import copy
import re
from pathlib import Path

import pytest
import torch
from basicsr.models import build_model
from conftest import PYTHON, free_port, load_params, run_cli, tiny_options, training_log, write_options
from tensorboard.backend.event_processing.event_accumulator import IMAGES, EventAccumulator

from losses_plugin.archs.class_module_arch import ClassModule
from losses_plugin.checks import OptionError
from losses_plugin.losses.fgd_loss import average_loss, class_loss
from losses_plugin.models.fgd_model import class_fractions


def one_hot_probs(classes, num_classes=3):
    """(N, M, 1, len) probabilities, one-hot on the given class of each region (softened, so argmax is the class)."""
    probs = torch.full((1, num_classes, 1, len(classes)), 0.1)
    probs[0, classes, 0, torch.arange(len(classes))] = 0.8
    return probs


def test_class_fractions_by_hand():
    assert class_fractions(one_hot_probs([0, 2, 2, 2])).tolist() == [0.25, 0.0, 0.75]
    assert class_fractions(one_hot_probs([1])).tolist() == [0.0, 1.0, 0.0]
    probs = torch.softmax(torch.randn(4, 3, 2, 5, generator=torch.Generator().manual_seed(0)), dim=1)
    fractions = class_fractions(probs)
    assert fractions.sum().item() == pytest.approx(1.0)
    for i in range(3):
        assert fractions[i].item() == (probs.argmax(dim=1) == i).float().mean().item()


def model_options(tmp_path, area_sizes=(3, 5, 7), print_freq=2):
    folder = str(tmp_path)
    network_g = {'type': 'FGDNet', 'backbone': {'type': 'EDSR', 'num_in_ch': 3, 'num_out_ch': 3, 'num_feat': 8,
                                                'num_block': 1, 'upscale': 2},
                 'area_sizes': list(area_sizes), 'class_module': {'num_feat': 8, 'pool': 1}}
    return {'name': 'fgd', 'model_type': 'FGDModel', 'scale': 2, 'num_gpu': 0, 'is_train': True, 'dist': False,
            'rank': 0, 'world_size': 1, 'network_g': network_g, 'logger': {'print_freq': print_freq},
            'path': {'experiments_root': folder, 'models': folder, 'training_states': folder},
            'train': {'ema_decay': 0, 'optim_g': {'type': 'Adam', 'lr': 1e-4},
                      'pixel_opt': {'type': 'FineGrainedDynamicLoss', 'average_weight': 0.1},
                      'scheduler': {'type': 'MultiStepLR', 'milestones': [100], 'gamma': 0.5}}}


def batch(seed):
    generator = torch.Generator().manual_seed(seed)
    gt = torch.rand(3, 3, 32, 32, generator=generator)
    return {'lq': torch.nn.functional.avg_pool2d(gt, 2), 'gt': gt}


def test_logged_class_fractions_are_the_argmax_of_the_class_module_on_the_batch(tmp_path):
    torch.manual_seed(0)
    model = build_model(copy.deepcopy(model_options(tmp_path, print_freq=1)))
    data = batch(0)
    with torch.no_grad():  # the probabilities the step sees (pool 1: 16 regions of 4x4 LR per image)
        probs = model.net_g(data['lq'], return_all=True)['probs']
    model.feed_data(data)
    model.optimize_parameters(1)
    log = model.get_current_log()
    fractions = [log[f'class_frac_{a}'] for a in (3, 5, 7)]
    assert sum(fractions) == pytest.approx(1.0)
    assert fractions == pytest.approx(class_fractions(probs).tolist())
    assert probs.shape[-2:] == (4, 4) and set(log) >= {'l_total', 'l_r', 'l_c1', 'l_c2', 'l_avg', 'l_sr'}


def test_class_fractions_cover_the_iterations_since_the_previous_log_line(tmp_path):
    model = build_model(copy.deepcopy(model_options(tmp_path, print_freq=2)))
    first, second, third = one_hot_probs([0, 0, 0, 2]), one_hot_probs([1, 1, 1, 1]), one_hot_probs([2, 2, 2, 2])
    assert model._class_usage(first, 1)['class_frac_3'].item() == 0.75  # iteration 1: its own regions
    window = model._class_usage(second, 2)  # iteration 2 is logged: iterations 1-2
    assert [window[f'class_frac_{a}'].item() for a in (3, 5, 7)] == [3 / 8, 4 / 8, 1 / 8]
    assert model._class_usage(third, 3)['class_frac_7'].item() == 1.0  # a new window after the log line


def test_static_area_logs_no_class_fractions(tmp_path):
    model = build_model(copy.deepcopy(model_options(tmp_path, area_sizes=[5])))
    model.feed_data(batch(0))
    model.optimize_parameters(1)
    assert not any(k.startswith('class_frac') for k in model.get_current_log())


def train_class_module(average_weight, steps=300):
    """The Class-Module alone on random LR patches of random brightness, trained by beta * L_c2 (+ L_avg);
    -> the class fractions on 256 new patches."""
    torch.manual_seed(0)
    module = ClassModule(num_feat=8)
    optimizer = torch.optim.Adam(module.parameters(), lr=1e-3)
    generator = torch.Generator().manual_seed(1)
    patches = lambda n: torch.rand(n, 3, 16, 16, generator=generator) * torch.rand(n, 1, 1, 1, generator=generator)  # noqa: E731
    for _ in range(steps):
        probs = module(patches(16))
        loss = 0.01 * class_loss(probs) + average_weight * average_loss(probs)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    with torch.no_grad():
        return class_fractions(module(patches(256)))


def test_l_c2_alone_collapses_onto_one_area_and_the_average_loss_spreads_the_regions():
    alone = train_class_module(0.0)
    assert alone.max() > 0.95  # the paper's L_c2: every region gets the same area (issue 14's measurement)
    spread = train_class_module(0.1)  # the shipped options' average_weight
    assert spread.max() < 0.95 and (spread > 0.05).sum() >= 2


slow = pytest.mark.slow


def fgd_options(demo_data, name, total_iter, area_sizes=(3, 5, 7)):
    opt = tiny_options(demo_data, name, total_iter=total_iter)
    opt['model_type'] = 'FGDModel'
    opt['network_g'] = {'type': 'FGDNet', 'backbone': opt['network_g'], 'area_sizes': list(area_sizes),
                        'class_module': {'num_feat': 8}}
    opt['train']['pixel_opt'] = {'type': 'FineGrainedDynamicLoss', 'alpha': 0.1, 'beta': 0.1, 'average_weight': 0.1}
    opt['datasets']['train']['num_worker_per_gpu'] = 1
    opt['logger']['save_checkpoint_freq'] = 4
    return opt


@slow
def test_fgd_trains_logs_its_terms_and_maps_and_resumes_exactly(demo_data, tmp_path):
    straight = fgd_options(demo_data, 'straight', 8)
    straight['val']['val_freq'] = 8
    straight['logger'].update(use_tb_logger=True, log_weight_maps=True)
    run_cli(['train', '-opt', write_options(straight, tmp_path / 'straight.yml')], cwd=tmp_path)
    run_cli(['train', '-opt', write_options(fgd_options(demo_data, 'resumed', 5), tmp_path / 'resumed.yml')],
            cwd=tmp_path)
    run_cli(['train', '-opt', write_options(fgd_options(demo_data, 'resumed', 8), tmp_path / 'resumed.yml'),
             '--auto_resume'], cwd=tmp_path)
    models = tmp_path / 'experiments'
    log = training_log(models / 'straight')
    assert re.search(r'iter:\s+8,.*l_total: .* l_r: .* l_c1: .* l_c2: .* l_avg: .* class_frac_3: .* class_frac_5: '
                     r'.* class_frac_7: ', log)
    assert '# psnr:' in log  # validation runs the inference path through SRModel's test()
    a = load_params(models / 'straight' / 'models' / 'net_g_latest.pth')
    b = load_params(models / 'resumed' / 'models' / 'net_g_latest.pth')
    assert any(k.startswith('class_module') for k in a) and any(k.startswith('bin_head') for k in a)
    assert all(torch.equal(a[k], b[k]) for k in a), 'FGDNet differs after resume'
    events = EventAccumulator(str(tmp_path / 'tb_logger' / 'straight'), size_guidance={IMAGES: 0}).Reload()
    assert {'weight_maps/fgd_bins', 'weight_maps/fgd_areas', 'weight_maps/fgd_error'} <= set(events.Tags()['images'])
    scalars = set(events.Tags()['scalars'])
    assert {'class_frac_3', 'class_frac_5', 'class_frac_7'} <= scalars, scalars
    fractions = [events.Scalars(f'class_frac_{a}')[-1].value for a in (3, 5, 7)]
    assert sum(fractions) == pytest.approx(1.0, abs=1e-6)


@slow
def test_fgd_static_area_under_torchrun_keeps_ranks_identical(demo_data, tmp_path):
    opt = fgd_options(demo_data, 'ddp', 3, area_sizes=[5])
    torchrun = [str(Path(PYTHON).parent / 'torchrun'), '--nproc_per_node=2', f'--master_port={free_port()}']
    run_cli(['train', '-opt', write_options(opt, tmp_path / 'ddp.yml'), '--launcher', 'pytorch'], cwd=tmp_path,
            launcher=torchrun)
    log = training_log(tmp_path / 'experiments' / 'ddp')
    assert 'World size: 2' in log and 'net_g parameters identical on all 2 ranks' in log
    assert 'l_c2' not in log  # no Class-Module in the static variant


def test_weight_maps_are_the_steps_bin_anchors_area_classes_and_error(tmp_path):
    """What TensorBoard shows (logger.log_weight_maps): the anchor of each pixel's predicted bin, the index of
    its region's most probable area, and |output - gt|, all of the batch the last step trained on."""
    torch.manual_seed(0)
    model = build_model(copy.deepcopy(model_options(tmp_path)))
    assert model.weight_maps() == {}  # before any step
    data = batch(1)
    with torch.no_grad():
        seen = model.net_g(data['lq'], return_all=True)
    model.feed_data(data)
    model.optimize_parameters(1)
    maps = model.weight_maps()
    assert set(maps) == {'fgd_bins', 'fgd_areas', 'fgd_error'}
    assert torch.equal(maps['fgd_bins'], (seen['bins'].float() + 0.5) / 32)  # anchors (b + 1/2)/K, K = 32
    assert torch.equal(maps['fgd_areas'], seen['areas'][:, None].float()) and maps['fgd_areas'].shape == (3, 1, 32, 32)
    assert torch.allclose(maps['fgd_error'], (seen['out'] - data['gt']).abs(), atol=1e-6)


@pytest.mark.parametrize('change, message', [
    (lambda opt: opt['train'].update(pixel_opt={'type': 'L1Loss'}),
     'FGDModel: train.pixel_opt must be a FineGrainedDynamicLoss, got L1Loss'),
    (lambda opt: opt.update(network_g=opt['network_g']['backbone']), 'FGDModel: network_g must be an FGDNet, got EDSR'),
])
def test_a_wrong_loss_or_network_is_one_line_naming_what_came(tmp_path, change, message):
    opt = model_options(tmp_path)
    change(opt)
    with pytest.raises(OptionError, match=f'^{re.escape(message)}$'):
        build_model(opt)


@pytest.mark.parametrize('logger, print_freq', [({'print_freq': 5}, 5), ({}, 1), (None, 1), ({'print_freq': 0}, 1)])
def test_the_class_fraction_window_is_logger_print_freq(tmp_path, logger, print_freq):
    opt = model_options(tmp_path)
    if logger is None:
        del opt['logger']
    else:
        opt['logger'] = logger
    model = build_model(opt)
    assert model.print_freq == print_freq
    assert (model.num_bins, model.area_sizes) == (32, (3, 5, 7))


def test_class_fractions_weight_each_iteration_by_its_number_of_regions(tmp_path):
    """A window's fractions count regions, not iterations: 4 regions of one step and 12 of the next."""
    model = build_model(copy.deepcopy(model_options(tmp_path, print_freq=2)))
    model._class_usage(one_hot_probs([0, 0, 0, 2]), 1)  # 1x4 regions
    many = one_hot_probs([1] * 6).reshape(1, 3, 2, 3).repeat(2, 1, 1, 1)  # 2 images of 2x3: 12 regions, area 5
    window = model._class_usage(many, 2)
    assert [window[f'class_frac_{a}'].item() for a in (3, 5, 7)] == pytest.approx([3 / 16, 12 / 16, 1 / 16])
