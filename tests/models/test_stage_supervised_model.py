"""StageSupervisedModel (MPRNet's training, SPLoss Table 2): every stage output is supervised.

Objective on a batch: ``sum_S w_S * (pixel(X_S, Y) + edge(X_S, Y))`` over the stage outputs X_S
(``net_g(lq, return_stages=True)``, final first); each weighted term is logged as
``l_<loss>_stage<k>`` (stage 3 = the final output) and ``l_total`` is their sum.
"""
import copy
import re

import pytest
import torch
import torch.nn.functional as F
from basicsr.losses import build_loss
from conftest import REPO, basicsr_warnings
from test_model_steps import float64  # noqa: F401 (a fixture)
from test_model_steps import (PerceptualStub, assert_ema_step, assert_gradient_step, build, parameters, step_options,
                              update)

from losses_plugin.checks import OptionError
from losses_plugin.options import read_option_file
from losses_plugin.strict_options import option_key_problems

LR = 1e-4
TINY_MPRNET = {'type': 'MPRNet', 'n_feat': 8, 'scale_unetfeats': 4, 'scale_orsnetfeats': 4, 'num_cab': 1,
               'reduction': 2}
CHARBONNIER = {'type': 'CharbonnierLoss', 'eps': 1e-6}  # MPRNet's eps 1e-3, squared as BasicSR adds it
EDGE = {'type': 'EdgeLoss', 'loss_weight': 0.05}
STAGE_WEIGHTS = [1.0, 0.5, 0.25]  # distinct, so a term credited to the wrong stage changes the numbers


def options(tmp_path, pixel_opt=CHARBONNIER, edge_opt=EDGE, stage_weights=STAGE_WEIGHTS):
    train = {'edge_opt': edge_opt} if edge_opt else {}
    if stage_weights is not None:
        train['stage_weights'] = stage_weights
    opt = step_options(tmp_path, 'StageSupervisedModel', TINY_MPRNET, pixel_opt, LR, **train)
    opt['scale'] = 1
    return opt


def blurred_batch():
    """2 pairs of 16x16: GT and its horizontally box-blurred version."""
    gt = torch.rand(2, 3, 16, 16, generator=torch.Generator().manual_seed(0))
    lq = F.avg_pool2d(F.pad(gt, (2, 2, 0, 0), mode='replicate'), (1, 5), stride=1)
    return {'lq': lq, 'gt': gt}


def objective(stages, gt, pixel_opt=CHARBONNIER, edge_opt=EDGE, stage_weights=STAGE_WEIGHTS):
    """{'l_pix_stage3': ..., ...}: the documented terms, from the losses built on their own."""
    pixel, edge = build_loss(copy.deepcopy(pixel_opt)), build_loss(copy.deepcopy(edge_opt))
    terms = {}
    for k, (w, out) in zip((3, 2, 1), zip(stage_weights, stages)):
        terms[f'l_pix_stage{k}'] = w * pixel(out, gt).item()
        terms[f'l_edge_stage{k}'] = w * edge(out, gt).item()
    return terms


def step(opt):
    """(model, net_g before the step, the log, the update) of one step on the blurred batch."""
    model = build(opt)
    batch = blurred_batch()
    model.feed_data(batch)
    net_before, before = copy.deepcopy(model.net_g), parameters(model.net_g)
    model.optimize_parameters(1)
    return model, net_before, model.get_current_log(), update(before, model.net_g)


@pytest.mark.usefixtures('float64')
def test_logged_terms_are_each_stage_s_weighted_losses_and_total_is_their_sum(tmp_path):
    model, net_before, log, _ = step(options(tmp_path))
    batch = blurred_batch()
    with torch.no_grad():
        stages = net_before(batch['lq'], return_stages=True)
    expected = objective(stages, batch['gt'])
    assert set(log) == {'l_total', *expected}
    assert torch.equal(model.output, stages[0])  # what the weight maps show: the final stage
    for name, value in expected.items():
        assert log[name] == pytest.approx(value, rel=1e-9), name
    assert log['l_total'] == pytest.approx(sum(v for k, v in log.items() if k != 'l_total'), rel=1e-12)


@pytest.mark.usefixtures('float64')
def test_the_step_is_gradient_descent_on_the_sum_over_stages_and_lowers_it(tmp_path):
    model, net_before, _, _ = step(options(tmp_path))
    batch = blurred_batch()
    with torch.no_grad():
        value_before = sum(objective(net_before(batch['lq'], return_stages=True), batch['gt']).values())
        value_after = sum(objective(model.net_g(batch['lq'], return_stages=True), batch['gt']).values())
    assert_gradient_step(value_before, value_after, parameters(net_before), model.net_g, LR)


@pytest.mark.usefixtures('float64')
def test_each_stage_s_loss_and_the_edge_loss_reach_the_update(tmp_path):
    _, _, _, full = step(options(tmp_path))
    for stage in range(3):
        weights = list(STAGE_WEIGHTS)
        weights[stage] = 0.0
        _, _, log, without = step(options(tmp_path, stage_weights=weights))
        assert f'l_pix_stage{3 - stage}' not in log
        assert (full - without).norm() > 1e-3 * full.norm(), f'stage {3 - stage} does not reach the update'
    _, _, log, without = step(options(tmp_path, edge_opt=None))  # the edge loss is optional
    assert not any(name.startswith('l_edge') for name in log)
    assert (full - without).norm() > 1e-3 * full.norm(), 'the edge loss does not reach the update'


def test_validation_and_testing_use_the_final_stage(tmp_path):
    model = build(options(tmp_path))
    batch = blurred_batch()
    model.feed_data(batch)
    model.test()
    with torch.no_grad():
        stages = model.net_g(batch['lq'], return_stages=True)
    assert torch.equal(model.output, stages[0])
    assert model.net_g.training  # test() hands the network back in training mode


def test_stage_weights_are_checked(tmp_path):
    with pytest.raises(OptionError, match='train.stage_weights: expected a list of numbers >= 0'):
        build(options(tmp_path, stage_weights=[1, -1, 1]))
    with pytest.raises(OptionError, match='not all 0'):
        build(options(tmp_path, stage_weights=[0, 0, 0]))
    model = build(options(tmp_path, stage_weights=[1, 1]))
    model.feed_data(blurred_batch())
    with pytest.raises(OptionError, match='2 weights for the 3 stage outputs'):
        model.optimize_parameters(1)


def test_a_network_without_stage_outputs_is_refused(tmp_path):
    opt = options(tmp_path, stage_weights=None)
    opt['network_g'] = {'type': 'DnCNN', 'num_conv': 2, 'num_feat': 4}
    model = build(opt)
    model.feed_data(blurred_batch())
    with pytest.raises((OptionError, TypeError), match='return_stages'):
        model.optimize_parameters(1)


def test_strict_option_keys_know_the_model_s_and_the_edge_loss_s_keys():
    opt = read_option_file(str(REPO / 'options' / 'mprnet_gopro_sploss.yml'))
    assert option_key_problems(opt) == []
    opt['train']['stage_weight'] = opt['train'].pop('stage_weights')
    opt['train']['edge_opt']['epsilon'] = opt['train']['edge_opt'].pop('eps')
    problems = option_key_problems(opt)
    assert any("train.stage_weight is not an option of StageSupervisedModel; did you mean 'stage_weights'?" in p
               for p in problems)
    assert any("train.edge_opt.epsilon is not an option of EdgeLoss; did you mean 'eps'?" in p for p in problems)


@pytest.mark.usefixtures('float64')
def test_the_perceptual_and_style_terms_are_logged_per_stage_weighted_and_summed(tmp_path):
    """``train.perceptual_opt`` (here a stand-in with BasicSR's ``(l_percep, l_style)`` interface) is a
    third per-stage term, the step gradient descent on the sum."""
    style = 0.3
    perceptual_opt = {'type': 'PerceptualStub', 'perceptual_weight': 2.0, 'style_weight': style}
    opt = options(tmp_path, edge_opt=None)
    opt['train']['perceptual_opt'] = perceptual_opt
    model, net_before, log, _ = step(opt)
    batch = blurred_batch()
    with torch.no_grad():
        stages = net_before(batch['lq'], return_stages=True)
        expected = {}
        for k, w, out in zip((3, 2, 1), STAGE_WEIGHTS, stages):
            expected[f'l_pix_stage{k}'] = w * build_loss(copy.deepcopy(CHARBONNIER))(out, batch['gt']).item()
            l_percep, l_style = PerceptualStub(2.0, style)(out, batch['gt'])
            expected[f'l_percep_stage{k}'] = w * l_percep.item()
            expected[f'l_style_stage{k}'] = w * l_style.item()
        value_after = 0.0
        for k, w, out in zip((3, 2, 1), STAGE_WEIGHTS, model.net_g(batch['lq'], return_stages=True)):
            value_after += w * (build_loss(copy.deepcopy(CHARBONNIER))(out, batch['gt'])
                                + sum(PerceptualStub(2.0, style)(out, batch['gt']))).item()
    assert log == pytest.approx({'l_total': sum(expected.values()), **expected}, rel=1e-9)
    assert_gradient_step(sum(expected.values()), value_after, parameters(net_before), model.net_g, LR)


def test_a_none_style_term_is_neither_logged_nor_summed(tmp_path):
    opt = options(tmp_path, edge_opt=None, stage_weights=[1.0, 0.5])
    opt['train']['perceptual_opt'] = {'type': 'PerceptualStub', 'perceptual_weight': 2.0}
    model = build(opt)
    stages, gt = torch.rand(2, 1, 3, 8, 8).unbind(0), torch.rand(1, 3, 8, 8)
    terms = model.stage_terms(stages, gt)
    pixel = build_loss(copy.deepcopy(CHARBONNIER))
    expected = {'l_pix_stage2': pixel(stages[0], gt), 'l_percep_stage2': PerceptualStub(2.0)(stages[0], gt)[0],
                'l_pix_stage1': 0.5 * pixel(stages[1], gt),
                'l_percep_stage1': 0.5 * PerceptualStub(2.0)(stages[1], gt)[0]}
    assert list(terms) == list(expected)
    for name, value in expected.items():
        assert terms[name].item() == pytest.approx(value.item(), rel=1e-6), name


def test_stage_weights_of_exactly_0_are_accepted_and_kept_as_floats(tmp_path):
    model = build(options(tmp_path, stage_weights=[2, 0, 0.5]))
    assert model.stage_weights == [2.0, 0.0, 0.5] and all(type(w) is float for w in model.stage_weights)
    assert build(options(tmp_path, stage_weights=None)).stage_weights is None


@pytest.mark.parametrize('weights', [[], 0.5, [1, True, 1], [1, '1', 1], (0, 0)])
def test_every_bad_stage_weights_value_has_the_full_line(tmp_path, weights):
    with pytest.raises(OptionError, match='^' + re.escape(
            'train.stage_weights: expected a list of numbers >= 0, not all 0, one per stage output, final stage '
            f'first, got {weights!r}') + '$'):
        build(options(tmp_path, stage_weights=weights))


def test_a_wrong_number_of_stage_weights_and_a_network_without_stages_have_their_full_lines(tmp_path):
    model = build(options(tmp_path, stage_weights=[1, 1]))
    model.feed_data(blurred_batch())
    with pytest.raises(OptionError, match='^' + re.escape(
            'train.stage_weights: 2 weights for the 3 stage outputs of network_g (one per stage, final stage '
            'first)') + '$'):
        model.optimize_parameters(1)
    opt = options(tmp_path, stage_weights=None)
    opt['network_g'] = {'type': 'DnCNN', 'num_conv': 2, 'num_feat': 4}
    model = build(opt)
    model.feed_data(blurred_batch())
    model.net_g.forward = lambda x, return_stages=False: x  # a network that takes the flag but returns one image
    with pytest.raises(OptionError, match='^' + re.escape(
            'StageSupervisedModel: network_g (DnCNN) must return a list of stage outputs for forward(x, '
            'return_stages=True), got Tensor') + '$'):
        model.optimize_parameters(1)


def test_without_stage_weights_every_stage_counts_once(tmp_path):
    """No ``stage_weights``: MPRNet's plain sum over the stages."""
    model = build(options(tmp_path, edge_opt=None, stage_weights=None))
    stages, gt = torch.rand(3, 1, 3, 8, 8).unbind(0), torch.rand(1, 3, 8, 8)
    pixel = build_loss(copy.deepcopy(CHARBONNIER))
    terms = model.stage_terms(stages, gt)
    assert list(terms) == ['l_pix_stage3', 'l_pix_stage2', 'l_pix_stage1']
    for term, stage in zip(terms.values(), stages):
        assert term.item() == pytest.approx(pixel(stage, gt).item(), rel=1e-6)


def test_a_step_updates_the_ema_copy_and_a_nan_step_is_skipped_by_name(tmp_path):
    opt = options(tmp_path, edge_opt=None, stage_weights=None)
    opt['train'].update(ema_decay=0.25, optim_g={'type': 'Adam', 'lr': 1e-2}, non_finite={'max_skips': 1})
    model = build(opt)
    ema_before = parameters(model.net_g_ema)
    model.feed_data(blurred_batch())
    model.optimize_parameters(1)
    assert_ema_step(model, ema_before, 0.25)
    batch = blurred_batch()
    batch['lq'][0, 0, 0, 0] = float('nan')
    model.feed_data(batch)
    with basicsr_warnings() as logged:
        model.optimize_parameters(2)
    assert len(logged) == 1 and logged[0].startswith('iteration 2: skipped the net_g step: non-finite total=nan')
