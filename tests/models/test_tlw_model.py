"""TLWModel (Algorithm 1): one EM iteration in-process, checked against the objective of each network;
then training, resuming and torchrun through the real CLI.

One iteration steps net_w on ``-log WC`` of one relaxed-Bernoulli sample (eq. 4, 8-9), then net_g on eq. (13)
weighted by T samples of the updated net_w. The step tests replay the iteration's random draw (the global
generator, seeded) or reuse its samples, and use the l1 judge, whose eq. (4) they write out themselves.
"""
import copy
import math
import re
from pathlib import Path

import pytest
import torch
from conftest import (PYTHON, basicsr_warnings, free_port, load_params, run_cli, tiny_options, training_log,
                      write_options)
from tensorboard.backend.event_processing.event_accumulator import IMAGES, EventAccumulator
from test_model_steps import float64  # noqa: F401 (a fixture)
from test_model_steps import (assert_gradient_step, build, fixed_batch, gradient_descent, moved, parameters,
                              step_options, tiny_edsr, update)

from losses_plugin.checks import OptionError
from losses_plugin.models.tlw_model import iterations_per_epoch, k_at_epoch

LR_G, LR_W = 1e-2, 1e-4
EPOCH, TAU = 1, 1  # k = k_at_epoch(1, tau=1), not the weighting net's initial 0.3
CURRENT_ITER = EPOCH + 1  # with iters_per_epoch 1, the first iteration of epoch EPOCH
SEED = 5  # seeds the global generator before the iteration: its first draw is net_w's sample
WC_EPS = 1e-3


def tlw_options(demo_data, name, **train_overrides):
    opt = tiny_options(demo_data, name, **train_overrides)
    opt['model_type'] = 'TLWModel'
    opt['network_w'] = {'type': 'TLWWeightingNet', 'num_feat': 8}
    opt['train']['pixel_opt'] = {'type': 'TLWLoss', 'base': 'l1'}
    opt['train']['optim_w'] = {'type': 'Adam', 'lr': 1e-3, 'betas': [0.5, 0.999]}
    opt['train']['tlw'] = {'judge': {'type': 'ms_ssim'}, 'tau': 1}  # k moves visibly within a few epochs
    return opt


def tlw_step_options(tmp_path, lr_g=LR_G, lr_w=LR_W, judge='l1', **pixel_opt):
    opt = step_options(tmp_path, 'TLWModel', tiny_edsr(), {'type': 'TLWLoss', 'base': 'l1', **pixel_opt}, lr_g,
                       optim_w=gradient_descent(lr_w),
                       tlw={'judge': {'type': judge}, 'tau': TAU, 'iters_per_epoch': 1})
    opt['network_w'] = {'type': 'TLWWeightingNet', 'num_feat': 8}
    return opt


def em_iteration(opt):
    """(model, batch, net_g and net_w as they were, sr of the old net_g) around one iteration of epoch EPOCH."""
    model = build(opt)
    batch = fixed_batch()
    model.feed_data(batch)
    net_g, net_w = copy.deepcopy(model.net_g), copy.deepcopy(model.net_w)
    with torch.no_grad():
        sr = net_g(batch['lq'])
    torch.manual_seed(SEED)
    model.optimize_parameters(CURRENT_ITER)
    return model, batch, net_g, net_w, sr


def weight_criterion(w, sr, gt):
    """Eq. (4) with the l1 judge ``D(img, ref) = mean|img - ref|``: x_w takes gt where w is 1, x_{1-w} sr."""
    def distance(img):
        return (img - gt).abs().mean(dim=(-3, -2, -1))
    return (distance(w * sr + (1 - w) * gt) + WC_EPS) / (distance((1 - w) * sr + w * gt) + WC_EPS)


def net_w_objective(net_w, k, sr, gt):
    """``-log WC`` of one relaxed-Bernoulli sample of ``net_w(gt, sr)`` (eq. 8-9), the iteration's draw replayed,
    and the mean WC; on a copy, so the BatchNorm running statistics of ``net_w`` stay as they are."""
    net_w = copy.deepcopy(net_w)
    net_w.set_k(k)
    torch.manual_seed(SEED)
    with torch.no_grad():
        wc = weight_criterion(net_w.sample(net_w(gt, sr), num_samples=1)[0], sr, gt)
    return -torch.log(wc).mean().item(), wc.mean().item()


def net_g_objective(out, gt, samples, wc, base, form, out_of_the_step):
    """Eq. (13) per image, averaged: ``weighted_sum`` normalises ``sum_i WC_i mean(w_i err)`` by ``sum_i WC_i``;
    ``log_posterior`` is ``-log(sum_i WC_i exp(-mean(w_i err)) / sum_i WC_i)``. With base mse the weights
    are ``w / (|x - x_hat| + 0.1)``, constants of the step like w: x_hat is ``out_of_the_step``."""
    error = out - gt
    if base == 'mse':
        samples, error = samples / ((out_of_the_step - gt).abs() + 0.1), error.square()
    expected = (samples * error.abs()).mean(dim=(-3, -2, -1))  # (T, N)
    if form == 'weighted_sum':
        per_image = (wc * expected).sum(dim=0) / wc.sum(dim=0)
    else:
        per_image = -torch.log((wc * torch.exp(-expected)).sum(dim=0) / wc.sum(dim=0))
    return per_image.mean().item()


@pytest.mark.usefixtures('float64')
@pytest.mark.parametrize('lr_g, lr_w', [(LR_G, 0), (0, LR_W), (LR_G, LR_W)])
def test_each_optimiser_steps_the_network_it_owns_and_no_other(lr_g, lr_w, tmp_path):
    model, _, net_g, net_w, _ = em_iteration(tlw_step_options(tmp_path, lr_g, lr_w))
    # parameters only: every forward of net_w in training mode moves its BatchNorm running statistics
    g_params, w_params = parameters(net_g), parameters(net_w)
    assert moved(g_params, model.net_g) == (set(g_params) if lr_g else set())
    w_moved = moved(w_params, model.net_w)
    if lr_w:  # every weight; a conv bias ahead of a BatchNorm has no gradient
        assert {name for name in w_params if name.endswith('weight')} <= w_moved
    else:
        assert not w_moved


@pytest.mark.usefixtures('float64')
def test_net_w_step_lowers_minus_log_wc_of_its_sample(tmp_path):
    model, batch, _, net_w, sr = em_iteration(tlw_step_options(tmp_path))
    log = model.get_current_log()
    assert log['k'] == pytest.approx(k_at_epoch(EPOCH, tau=TAU))
    value_before, wc_before = net_w_objective(net_w, log['k'], sr, batch['gt'])
    assert log['l_w'] == pytest.approx(value_before, rel=1e-6), 'l_w is not -log WC of the iteration\'s sample'
    assert log['wc'] == pytest.approx(wc_before, rel=1e-6)
    value_after, _ = net_w_objective(model.net_w, log['k'], sr, batch['gt'])
    assert_gradient_step(value_before, value_after, parameters(net_w), model.net_w, LR_W)


@pytest.mark.usefixtures('float64')
@pytest.mark.parametrize('base, form', [('l1', 'weighted_sum'), ('l1', 'log_posterior'), ('mse', 'weighted_sum')])
def test_net_g_step_lowers_eq13_weighted_by_samples_of_the_updated_net_w(base, form, tmp_path):
    model, batch, net_g, net_w, sr = em_iteration(tlw_step_options(tmp_path, base=base, form=form))
    gt = batch['gt']
    with torch.no_grad():  # net_w(gt, sr) in training mode depends on its parameters only (batch statistics)
        mean = model.weight_maps()['tlw_mean']
        assert torch.allclose(mean, copy.deepcopy(model.net_w)(gt, sr), rtol=0, atol=1e-12)
        net_w.set_k(model.get_current_log()['k'])
        assert not torch.allclose(mean, net_w(gt, sr), rtol=0, atol=1e-9)  # the M-step saw the updated net_w
        samples = model.weight_samples
        assert samples.shape == (3, *gt.shape)  # T = 3
        wc = weight_criterion(samples, sr, gt)
        out = net_g(batch['lq'])
        value_before = net_g_objective(out, gt, samples, wc, base, form, out)
        value_after = net_g_objective(model.net_g(batch['lq']), gt, samples, wc, base, form, out)
    assert model.get_current_log()['l_pix'] == pytest.approx(value_before, rel=1e-6)
    assert_gradient_step(value_before, value_after, parameters(net_g), model.net_g, LR_G)


@pytest.mark.usefixtures('float64')
def test_the_tlw_loss_weight_scales_the_net_g_update_and_leaves_net_w_alone(tmp_path):
    def one_iteration(loss_weight):
        model, _, net_g, net_w, _ = em_iteration(tlw_step_options(tmp_path, loss_weight=loss_weight))
        return (model.get_current_log(), update(parameters(net_g), model.net_g),
                update(parameters(net_w), model.net_w))

    (log, step_g, step_w), (log_half, step_g_half, step_w_half) = map(one_iteration, (1.0, 0.5))
    assert log_half['l_pix'] == pytest.approx(0.5 * log['l_pix'], rel=1e-9)
    assert (step_g_half - 0.5 * step_g).norm() <= 1e-4 * step_g.norm()
    assert log_half['l_w'] == log['l_w'] and torch.equal(step_w_half, step_w)


def test_one_em_iteration_logs_its_terms_and_saves_net_w_with_both_optimisers(tmp_path):
    model, *_ = em_iteration(tlw_step_options(tmp_path, judge='ms_ssim'))  # saves into tmp_path
    log = model.get_current_log()
    assert set(log) == {'l_pix', 'l_w', 'wc', 'k'} and math.isfinite(log['l_w'])
    assert not any(p.requires_grad for p in model.judge.parameters())
    model.save(2, 1)
    saved = torch.load(tmp_path / 'net_w_1.pth', weights_only=True)['params']
    assert saved.keys() == model.net_w.state_dict().keys()  # the judge is not saved with it
    state = torch.load(tmp_path / '1.state', weights_only=False)
    assert len(state['optimizers']) == len(state['schedulers']) == 2 and state['epoch'] == 2


def test_wrong_loss_and_missing_options_are_clear_errors(tmp_path):
    opt = tlw_step_options(tmp_path)
    opt['train']['pixel_opt'] = {'type': 'L1Loss'}
    with pytest.raises(ValueError, match='train.pixel_opt must be a TLWLoss'):
        build(opt)
    opt = tlw_step_options(tmp_path)
    del opt['train']['optim_w']
    with pytest.raises(ValueError, match='train.optim_w'):
        build(opt)
    opt = tlw_step_options(tmp_path)
    opt['train']['tlw']['k_0'] = 0.5
    with pytest.raises(ValueError, match='unknown train.tlw option.*k_0'):
        build(opt)


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
def test_missing_lpips_weights_end_the_cli_with_one_clear_line(demo_data, tmp_path):
    opt = tlw_options(demo_data, 'lpips', total_iter=1)
    opt['train']['tlw']['judge'] = {'type': 'lpips'}
    env_home = tmp_path / 'torch_home'
    result = run_cli(['train', '-opt', write_options(opt, tmp_path / 'lpips.yml')], cwd=tmp_path, check=False,
                     env={'TORCH_HOME': str(env_home)})
    assert result.returncode == 2
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith('basicsr train: error: TLW judge lpips: the VGG16 backbone weights') and str(env_home) in last


@pytest.mark.parametrize('world_size, enlarge, batch_size',
                         [(1, None, 2), (2, 3, 2), (3, 2, 3), (4, 3, 1), (1, 1, 100)])
def test_iterations_per_epoch_is_the_length_of_basicsrs_loader(demo_data, world_size, enlarge, batch_size):
    """The epoch of the k schedule: as many iterations as BasicSR's EnlargedSampler + DataLoader give one rank
    (at least 1: a training set smaller than one batch still counts its epochs)."""
    from basicsr.data import build_dataloader, build_dataset
    from basicsr.data.data_sampler import EnlargedSampler
    opt = tiny_options(demo_data, 'epochs')
    opt['world_size'], opt['dist'] = world_size, world_size > 1
    train = dict(opt['datasets']['train'], phase='train', scale=opt['scale'], batch_size_per_gpu=batch_size)
    train.pop('dataset_enlarge_ratio')
    if enlarge is not None:  # (None: BasicSR's default of 1)
        train['dataset_enlarge_ratio'] = enlarge
    opt['datasets']['train'] = train
    dataset = build_dataset(train)
    assert len(dataset) == 6  # 6 x 3 / 4 samples per rank: 4.5, which the sampler rounds up
    loader = build_dataloader(dataset, train, num_gpu=0, dist=opt['dist'],
                              sampler=EnlargedSampler(dataset, world_size, 0, enlarge or 1), seed=0)
    assert iterations_per_epoch(opt) == max(len(loader), 1)
    assert (len(loader) == 0) == (batch_size == 100)


@pytest.mark.parametrize('num_gpu, world_size, rank, iterations', [(0, 1, 0, 30), (1, 1, 0, 30), (4, 1, 0, 7),
                                                                    (2, 2, 0, 15), (2, 2, 1, 15)])
def test_iterations_per_epoch_is_the_length_of_the_loader_for_dataparallel_and_ddp(demo_data, num_gpu, world_size,
                                                                                   rank, iterations):
    """Without a launcher BasicSR's loader batches ``batch_size_per_gpu * num_gpu`` for DataParallel; under one
    (world_size 2) each rank loads ``batch_size_per_gpu``. 6 images enlarged 10x in batches of 2 per GPU."""
    from basicsr.data import build_dataloader, build_dataset
    from basicsr.data.data_sampler import EnlargedSampler

    from losses_plugin.train import build_train_loader
    opt = tiny_options(demo_data, 'epochs')
    opt.update(num_gpu=num_gpu, world_size=world_size, rank=rank, dist=world_size > 1, manual_seed=0)
    train = dict(opt['datasets']['train'], phase='train', scale=opt['scale'], dataset_enlarge_ratio=10)
    opt['datasets']['train'] = train
    dataset = build_dataset(train)
    basicsr_loader = build_dataloader(dataset, train, num_gpu=num_gpu, dist=opt['dist'],
                                      sampler=EnlargedSampler(dataset, world_size, rank, 10), seed=0)
    assert iterations_per_epoch(opt) == len(basicsr_loader) == len(build_train_loader(opt)[0]) == iterations


def test_iterations_per_epoch_needs_the_training_set():
    with pytest.raises(OptionError, match=re.escape('TLWModel: the k schedule counts epochs of datasets.train, '
                                                    'which the options lack; set train.tlw.iters_per_epoch instead')):
        iterations_per_epoch({'datasets': {'val': {}}, 'world_size': 1})


@pytest.mark.parametrize('param_key, strict', [('params', True), ('params_ema', False)])
def test_a_pretrained_weighting_net_is_loaded_from_path_pretrain_network_w(tmp_path, param_key, strict):
    """``path.pretrain_network_w`` (with ``param_key_w``, ``strict_load_w``) starts net_w from a checkpoint,
    as BasicSR's pretrain_network_g starts net_g; non-strict loading takes the keys that fit."""
    source = build(tlw_step_options(tmp_path))
    with torch.no_grad():
        for p in source.net_w.parameters():
            p.add_(torch.randn_like(p))
    state = source.net_w.state_dict()
    if not strict:
        state['not_a_weight'] = torch.zeros(1)
    checkpoint = tmp_path / 'net_w.pth'
    torch.save({param_key: state}, checkpoint)
    opt = tlw_step_options(tmp_path)
    opt['path'].update(pretrain_network_w=str(checkpoint), param_key_w=param_key, strict_load_w=strict)
    loaded = build(opt)
    fresh = build(tlw_step_options(tmp_path))
    for name, value in source.net_w.state_dict().items():
        assert torch.equal(loaded.net_w.state_dict()[name], value), name
    for (name, value), (_, init) in zip(source.net_w.named_parameters(), fresh.net_w.named_parameters()):
        assert not torch.equal(init, value), name  # (every weight moved from the initial ones)
    opt['path']['strict_load_w'] = True
    if not strict:  # the extra key is refused when loading strictly
        with pytest.raises(RuntimeError, match='not_a_weight'):
            build(opt)


@pytest.mark.usefixtures('float64')
def test_train_tlw_wc_eps_is_the_epsilon_of_eq4(tmp_path):
    """``wc_eps`` is eq. (4)'s epsilon in both steps: ``l_w`` is ``-log WC`` with it."""
    eps = 0.25
    opt = tlw_step_options(tmp_path)
    opt['train']['tlw']['wc_eps'] = eps
    model, batch, _, net_w, sr = em_iteration(opt)
    log = model.get_current_log()
    net_w.set_k(log['k'])
    torch.manual_seed(SEED)
    with torch.no_grad():
        w = net_w.sample(net_w(batch['gt'], sr), num_samples=1)[0]
    distance = lambda img: (img - batch['gt']).abs().mean(dim=(-3, -2, -1))  # noqa: E731
    wc = (distance(w * sr + (1 - w) * batch['gt']) + eps) / (distance((1 - w) * sr + w * batch['gt']) + eps)
    assert log['wc'] == pytest.approx(wc.mean().item(), rel=1e-9)
    assert log['l_w'] == pytest.approx(-torch.log(wc).mean().item(), rel=1e-9)
    assert abs(log['l_w'] - net_w_objective(net_w, log['k'], sr, batch['gt'])[0]) > 1e-6  # eps 1e-3 differs


def test_k_counts_whole_epochs_of_iters_per_epoch_from_iteration_1(tmp_path):
    """Iterations 1..n are epoch 0 (k = k0), n+1..2n epoch 1, with the schedule's own k0, k_span and tau."""
    schedule = {'k0': 0.1, 'k_span': 0.5, 'tau': 2}
    opt = tlw_step_options(tmp_path, lr_g=0, lr_w=0)
    opt['train']['tlw'].update(schedule, iters_per_epoch=3)
    model = build(opt)
    model.feed_data(fixed_batch())
    ks = {}
    for current_iter in (1, 3, 4, 6, 7):
        model.optimize_parameters(current_iter)
        ks[current_iter] = model.get_current_log()['k']
    expected = {1: 0.1, 3: 0.1, 4: 0.1 + 0.5 * (1 - math.exp(-1 / 2)), 6: 0.1 + 0.5 * (1 - math.exp(-1 / 2)),
                7: 0.1 + 0.5 * (1 - math.exp(-2 / 2))}
    assert ks == pytest.approx(expected, rel=1e-6)
    assert model.get_bare_model(model.net_w).k == pytest.approx(expected[7], rel=1e-6)


@pytest.mark.parametrize('change, message', [
    (lambda opt: opt.pop('network_w'), 'TLWModel: the option file needs network_w (e.g. {type: TLWWeightingNet})'),
    (lambda opt: opt['train'].pop('optim_w'),
     "TLWModel: train.optim_w (the weighting network's optimiser) is missing"),
    (lambda opt: opt['train']['tlw'].update(k_0=0.5, Tau=2),
     'TLWModel: unknown train.tlw option(s) Tau, k_0; known: judge, wc_eps, iters_per_epoch, k0, k_span, tau'),
    (lambda opt: opt['train']['tlw'].update(iters_per_epoch=0),
     'TLWModel: train.tlw.iters_per_epoch must be an integer >= 1, got 0'),
    (lambda opt: opt['train']['tlw'].update(iters_per_epoch=1.0),
     'TLWModel: train.tlw.iters_per_epoch must be an integer >= 1, got 1.0'),
    (lambda opt: opt['train']['tlw'].update(iters_per_epoch=True),
     'TLWModel: train.tlw.iters_per_epoch must be an integer >= 1, got True'),
    (lambda opt: opt['train'].update(pixel_opt={'type': 'L1Loss'}),
     'TLWModel: train.pixel_opt must be a TLWLoss, got L1Loss'),
    (lambda opt: opt['train'].update(scheduler_w={'type': 'StepLR', 'step_size': 2}),
     "TLWModel: train.scheduler_w.type must be one of MultiStepLR, MultiStepRestartLR, CosineAnnealingRestartLR, "
     "got 'StepLR'"),
])
def test_option_errors_name_the_model_and_the_option(tmp_path, change, message):
    opt = tlw_step_options(tmp_path)
    change(opt)
    with pytest.raises(OptionError, match=f'^{re.escape(message)}$'):
        build(opt)


def test_iters_per_epoch_of_1_is_accepted(tmp_path):
    assert build(tlw_step_options(tmp_path)).iters_per_epoch == 1  # the lower bound of the check above


@pytest.mark.parametrize('scheduler_w', [None, {'type': 'CosineAnnealingRestartLR', 'periods': [10],
                                                'restart_weights': [1], 'eta_min': 1e-7}])
def test_net_w_has_its_own_scheduler_a_copy_of_net_gs_by_default(tmp_path, scheduler_w):
    opt = tlw_step_options(tmp_path)
    opt['train']['scheduler'] = {'type': 'MultiStepLR', 'milestones': [2], 'gamma': 0.5}
    if scheduler_w is not None:
        opt['train']['scheduler_w'] = scheduler_w
    model = build(opt)
    scheduler_g, scheduler_of_w = model.schedulers
    assert scheduler_g.optimizer is model.optimizer_g and scheduler_of_w.optimizer is model.optimizer_w
    if scheduler_w is None:
        assert type(scheduler_of_w) is type(scheduler_g)
        assert dict(scheduler_of_w.milestones) == {2: 1} and scheduler_of_w.gamma == 0.5
    else:
        assert type(scheduler_of_w).__name__ == 'CosineAnnealingRestartLR'
        assert scheduler_of_w.periods == [10] and scheduler_of_w.eta_min == 1e-7
    assert 'type' in opt['train']['scheduler'] and 'type' in (scheduler_w or {'type': None})  # options not popped


def test_a_nan_batch_skips_both_steps_each_named_and_counted_apart(tmp_path):
    opt = tlw_step_options(tmp_path)
    opt['train']['non_finite'] = {'max_skips': 2}
    model = build(opt)
    batch = fixed_batch()
    batch['gt'][0, 0, 0, 0] = float('nan')
    model.feed_data(batch)
    g_before, w_before = parameters(model.net_g), parameters(model.net_w)
    with basicsr_warnings() as logged:
        model.optimize_parameters(3)
    assert logged == [
        f'iteration 3: skipped the {net} step: non-finite total=nan, {term}=nan; 1 skipped in a row '
        '(train.non_finite.max_skips: 2)' for net, term in (('net_w', 'l_w'), ('net_g', 'l_pix'))]
    assert not moved(g_before, model.net_g) and not moved(w_before, model.net_w)
    assert model.step_guard.skips_in_a_row == {'net_w': 1, 'net_g': 1}


def test_weight_maps_are_the_m_steps_means_and_its_first_sample(tmp_path):
    model = build(tlw_step_options(tmp_path))
    assert model.weight_maps() == {}  # before any step
    model, *_ = em_iteration(tlw_step_options(tmp_path))
    maps = model.weight_maps()
    assert set(maps) == {'tlw_mean', 'tlw_sample'}
    assert maps['tlw_mean'] is model.weight_mean and torch.equal(maps['tlw_sample'], model.weight_samples[0])
    assert not torch.equal(model.weight_samples[0], model.weight_samples[1])  # (the samples differ)


def test_k_schedule_defaults_are_the_papers():
    """Section IV-A: k = 0.6 (1 - exp(-epoch / 200)) + 0.3."""
    assert k_at_epoch(0) == 0.3
    assert k_at_epoch(200) == pytest.approx(0.6 * (1 - math.exp(-1)) + 0.3, rel=1e-12)


@pytest.mark.usefixtures('float64')
def test_the_e_step_draws_one_sample_then_the_m_step_draws_t(tmp_path):
    """The iteration's random draws, replayed: one sample of the old net_w's means, then T = 3 of the
    updated net_w's; a different number in the first draw would shift the second."""
    model, batch, _, net_w, sr = em_iteration(tlw_step_options(tmp_path))
    net_w.set_k(model.get_current_log()['k'])
    torch.manual_seed(SEED)
    with torch.no_grad():
        net_w.sample(net_w(batch['gt'], sr), num_samples=1)
        replayed = model.get_bare_model(model.net_w).sample(model.weight_mean)
    assert torch.equal(replayed, model.weight_samples)


def test_without_iters_per_epoch_k_counts_epochs_of_datasets_train(demo_data, tmp_path):
    opt = tlw_step_options(tmp_path)
    del opt['train']['tlw']['iters_per_epoch']
    opt['datasets'] = {'train': tiny_options(demo_data, 'tlw')['datasets']['train']}
    opt['datasets']['train']['phase'] = 'train'
    assert build(opt).iters_per_epoch == iterations_per_epoch(opt) == 6  # 6 images, enlarged 2x, batches of 2


def test_a_pretrained_weighting_net_loads_strictly_by_default(tmp_path):
    source = build(tlw_step_options(tmp_path))
    torch.save({'params': dict(source.net_w.state_dict(), not_a_weight=torch.zeros(1))}, tmp_path / 'net_w.pth')
    opt = tlw_step_options(tmp_path)
    opt['path']['pretrain_network_w'] = str(tmp_path / 'net_w.pth')
    with pytest.raises(RuntimeError, match='not_a_weight'):
        build(opt)
