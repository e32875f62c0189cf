"""UDLModel (the uncertainty-driven loss, Ning et al. 2021, as DESIGN.md and the TLW paper's eq. 2-3 give it):
one step of each stage in-process, checked against the stage's documented objective; then both stages
through the real CLI.

- stage esu: net_g (an UncertaintySRNet) gives sr and the log-uncertainty s; objective
  ``mean(exp(-s) |sr - hr|) + 2 mean(s)``;
- stage udl: a plain SR net_g; s comes from the frozen stage-1 network of a checkpoint; objective
  ``mean(w |sr - hr|)``, ``w = s - min_HW(s) + 1`` per image and channel.
"""
import re

import pytest
import torch
from basicsr.archs import build_network
from conftest import load_params, run_cli, tiny_options, training_log, write_options
from test_model_steps import float64  # noqa: F401 (a fixture)
from test_model_steps import (assert_ema_step, assert_gradient_step, build, fixed_batch, log_after_step, moved,
                              parameters, step_options, tiny_edsr)

from losses_plugin.checks import OptionError

LR = 1e-5


def uncertainty_network():
    return {'type': 'UncertaintySRNet', 'backbone': tiny_edsr(), 'num_feat': 8}


def udl_options(tmp_path, stage, estimator_path=None):
    network_g = uncertainty_network() if stage == 'esu' else tiny_edsr()
    opt = step_options(tmp_path, 'UDLModel', network_g, {'type': 'UDLLoss', 'stage': stage}, LR)
    if estimator_path is not None:
        opt['train']['uncertainty_estimator'] = {'network': uncertainty_network(), 'pretrain_path': str(estimator_path)}
    return opt


def esu_objective(sr, s, hr):
    return ((torch.exp(-s) * (sr - hr).abs()).mean() + 2 * s.mean()).item()


def udl_objective(sr, s, hr):
    w = s - s.amin(dim=(-2, -1), keepdim=True) + 1
    return (w * (sr - hr).abs()).mean().item()


def stage_one_checkpoint(tmp_path):
    """(network, path): a stage-1 network saved as BasicSR saves net_g; its random head makes s vary over the image."""
    torch.manual_seed(1)
    net = build_network(uncertainty_network()).eval()
    path = tmp_path / 'esu_net_g.pth'
    torch.save({'params': net.state_dict()}, path)
    return net, path


@pytest.mark.usefixtures('float64')
def test_esu_step_is_gradient_descent_on_eq2_through_sr_and_s(tmp_path):
    model = build(udl_options(tmp_path, 'esu'))
    batch = fixed_batch()
    model.feed_data(batch)
    before = parameters(model.net_g)
    with torch.no_grad():
        sr, s = model.net_g(batch['lq'], return_uncertainty=True)
    model.optimize_parameters(1)
    log = model.get_current_log()
    value_before = esu_objective(sr, s, batch['gt'])
    assert log['l_pix'] == pytest.approx(value_before, rel=1e-6)
    assert log['s'] == pytest.approx(s.mean().item(), rel=1e-6)
    assert moved(before, model.net_g) == set(before)  # the backbone and the uncertainty head
    with torch.no_grad():
        value_after = esu_objective(*model.net_g(batch['lq'], return_uncertainty=True), batch['gt'])
    assert_gradient_step(value_before, value_after, before, model.net_g, LR)


@pytest.mark.usefixtures('float64')
def test_udl_step_is_gradient_descent_on_eq3_weighted_by_the_frozen_stage_one_s(tmp_path):
    estimator, path = stage_one_checkpoint(tmp_path)
    model = build(udl_options(tmp_path, 'udl', path))
    batch = fixed_batch()
    model.feed_data(batch)
    before = parameters(model.net_g)
    with torch.no_grad():
        s = estimator(batch['lq'], return_uncertainty=True)[1]
        sr = model.net_g(batch['lq'])
    assert (s - s.amin(dim=(-2, -1), keepdim=True)).amax() > 0.1  # weights that differ from a plain L1's
    model.optimize_parameters(1)
    log = model.get_current_log()
    value_before = udl_objective(sr, s, batch['gt'])
    assert log['l_pix'] == pytest.approx(value_before, rel=1e-6)
    assert log['s'] == pytest.approx(s.mean().item(), rel=1e-6)
    assert moved(before, model.net_g) == set(before)
    with torch.no_grad():
        value_after = udl_objective(model.net_g(batch['lq']), s, batch['gt'])
    assert_gradient_step(value_before, value_after, before, model.net_g, LR)
    # the next iteration weights by the same s: the estimator is frozen, steps do not reach it
    assert log_after_step(model, 1)['l_pix'] == pytest.approx(value_after, rel=1e-6)


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


@pytest.mark.parametrize('stage', ['esu', 'udl'])
def test_weight_maps_are_the_steps_uncertainty_and_udl_weights(tmp_path, stage):
    """What TensorBoard shows (logger.log_weight_maps): exp(s) of the batch the last step trained on and, in
    stage udl, the loss weights w = s - min_HW(s) + 1 (eq. 3)."""
    _, path = stage_one_checkpoint(tmp_path)
    model = build(udl_options(tmp_path, stage, path if stage == 'udl' else None))
    assert model.weight_maps() == {}  # before any step
    batch = fixed_batch()
    with torch.no_grad():
        s = (model.net_g if stage == 'esu' else model.estimator)(batch['lq'], return_uncertainty=True)[1]
    model.feed_data(batch)
    model.optimize_parameters(1)
    maps = model.weight_maps()
    assert set(maps) == ({'udl_uncertainty'} if stage == 'esu' else {'udl_uncertainty', 'udl_weights'})
    assert torch.allclose(maps['udl_uncertainty'], torch.exp(s), rtol=1e-6)
    if stage == 'udl':
        weights = maps['udl_weights']
        assert torch.allclose(weights, s - s.amin(dim=(-2, -1), keepdim=True) + 1, rtol=1e-6)
        assert torch.equal(weights.amin(dim=(-2, -1)), torch.ones(weights.shape[:2], dtype=weights.dtype))


ESTIMATOR_NEEDED = ('UDLModel: stage udl needs train.uncertainty_estimator: {network: <stage-1 network_g>, '
                    'pretrain_path: <stage-1 net_g checkpoint>}')


@pytest.mark.parametrize('estimator', [None, 'esu.pth', {'network': uncertainty_network()},
                                       {'pretrain_path': 'esu.pth'}])
def test_an_incomplete_uncertainty_estimator_is_one_clear_error(tmp_path, estimator):
    opt = udl_options(tmp_path, 'udl')
    if estimator is not None:
        opt['train']['uncertainty_estimator'] = estimator
    with pytest.raises(OptionError, match=f'^{re.escape(ESTIMATOR_NEEDED)}$'):
        build(opt)


def test_a_missing_estimator_checkpoint_names_the_option_and_what_to_do(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(OptionError, match='^' + re.escape(
            f"train.uncertainty_estimator.pretrain_path: 'missing.pth' does not exist (relative to {tmp_path}); "
            'train the UDL stage esu first (its net_g checkpoint goes here)') + '$'):
        build(udl_options(tmp_path, 'udl', 'missing.pth'))


def test_the_estimator_loads_param_key_from_a_home_relative_path_frozen_in_eval_mode(tmp_path, monkeypatch):
    """``param_key`` picks the checkpoint's entry (e.g. the EMA weights), ``~`` is the home folder; the estimator
    is frozen (no parameter requires a gradient) and in eval mode."""
    estimator, _ = stage_one_checkpoint(tmp_path)
    ema = {name: value + 1 for name, value in estimator.state_dict().items()}
    torch.save({'params': estimator.state_dict(), 'params_ema': ema}, tmp_path / 'esu_ema.pth')
    monkeypatch.setenv('HOME', str(tmp_path))
    opt = udl_options(tmp_path, 'udl', '~/esu_ema.pth')
    opt['train']['uncertainty_estimator']['param_key'] = 'params_ema'
    model = build(opt)
    for name, value in model.estimator.state_dict().items():
        assert torch.equal(value, ema[name]), name
    assert not model.estimator.training and not any(p.requires_grad for p in model.estimator.parameters())
    del opt['train']['uncertainty_estimator']['param_key']  # default: 'params'
    model = build(opt)
    for name, value in model.estimator.state_dict().items():
        assert torch.equal(value, estimator.state_dict()[name]), name


def test_a_pixel_loss_other_than_udl_is_a_clear_error(tmp_path):
    opt = udl_options(tmp_path, 'esu')
    opt['train']['pixel_opt'] = {'type': 'L1Loss'}
    with pytest.raises(OptionError, match='^UDLModel: train.pixel_opt must be a UDLLoss, got L1Loss$'):
        build(opt)


def test_the_estimator_checkpoint_loads_strictly(tmp_path):
    estimator, _ = stage_one_checkpoint(tmp_path)
    state = dict(estimator.state_dict(), not_a_weight=torch.zeros(1))
    torch.save({'params': state}, tmp_path / 'extra.pth')
    with pytest.raises(RuntimeError, match='not_a_weight'):
        build(udl_options(tmp_path, 'udl', tmp_path / 'extra.pth'))


@pytest.mark.parametrize('stage', ['esu', 'udl'])
def test_a_step_updates_the_ema_copy_by_ema_decay(tmp_path, stage):
    _, path = stage_one_checkpoint(tmp_path)
    opt = udl_options(tmp_path, stage, path if stage == 'udl' else None)
    opt['train'].update(ema_decay=0.25, optim_g={'type': 'Adam', 'lr': 1e-2})  # a first step of ~1e-2 per weight
    model = build(opt)
    ema_before = parameters(model.net_g_ema)
    model.feed_data(fixed_batch())
    model.optimize_parameters(1)
    assert_ema_step(model, ema_before, 0.25)
