"""Strict option keys: every key of a loss, network, metric or model option is read or rejected.

An unknown key is one line naming the option file, the key path and the closest valid name (exit 2, no
traceback) before anything is built; `strict_options: false` prints the same lines as warnings and goes on without
those keys.
"""
import copy
import subprocess
import sys
from pathlib import Path

import pytest
from basicsr.models.sr_model import SRModel
from basicsr.utils.registry import ARCH_REGISTRY, MODEL_REGISTRY
from conftest import REPO, load_params, run_cli, tiny_options, training_log, write_options
from torch import nn

from losses_plugin import cli
from losses_plugin.checks import OptionError
from losses_plugin.options import read_option_file
from losses_plugin.strict_options import (accepted_options, check_option_keys, drop_unread_keys, model_train_keys,
                                          option_key_problems)

SHIPPED = sorted((REPO / 'options').glob('*.yml')) + sorted((REPO / 'options' / 'demo').glob('*.yml'))
TINY_EDSR = {'type': 'EDSR', 'num_in_ch': 3, 'num_out_ch': 3, 'num_feat': 8, 'num_block': 1, 'upscale': 4}


def error_line(command, opt, tmp_path, capsys):
    """Runs ``cli.main`` on ``opt``; returns (exit code, the option file, stderr's lines)."""
    path = write_options(opt, tmp_path / 'o.yml')
    code = cli.main([command, '-opt', str(path)])
    return code, path, capsys.readouterr().err.strip().splitlines()


def test_misspelt_loss_key_is_one_line_with_file_key_path_and_closest_name(demo_data, tmp_path, capsys):
    opt = tiny_options(demo_data, 'alpah', pixel_opt={'type': 'SPLoss', 'alpah': 2})
    code, path, lines = error_line('train', opt, tmp_path, capsys)
    assert code == 2
    assert lines == [f"basicsr train: error: {path}: train.pixel_opt.alpah is not an option of SPLoss; did you mean "
                     "'alpha'? (valid: alpha, base, data_range, loss_weight, reduction)"]
    assert not (tmp_path / 'experiments').exists()


def with_change(demo_data, change):
    opt = tiny_options(demo_data, 'strict')
    change(opt)
    return opt


def set_key(*keys, value=1):
    def change(opt):
        node = opt
        for key in keys[:-1]:
            node = node[key]
        node[keys[-1]] = value
    return change


def udl_options(opt):
    opt['model_type'] = 'UDLModel'
    opt['train']['pixel_opt'] = {'type': 'UDLLoss', 'stage': 'udl'}
    opt['train']['uncertainty_estimator'] = {'network': {'type': 'UncertaintySRNet', 'backbone': dict(TINY_EDSR)},
                                             'pretrain_path': 'esu.pth'}


def tlw_options(opt):
    opt['model_type'] = 'TLWModel'
    opt['network_w'] = {'type': 'TLWWeightingNet', 'num_feat': 8}
    opt['train'].update(pixel_opt={'type': 'TLWLoss'}, optim_w={'type': 'Adam', 'lr': 1e-4})


def then(*changes):
    def change(opt):
        for one in changes:
            one(opt)
    return change


UNKNOWN_KEYS = [
    (set_key('network_g', 'num_feats', value=8), 'network_g.num_feats', 'EDSR', 'num_feat'),
    (set_key('network_g', value={'type': 'FGDNet', 'backbone': {**TINY_EDSR, 'num_blok': 1}}),
     'network_g.backbone.num_blok', 'EDSR', 'num_block'),
    (then(udl_options, set_key('train', 'uncertainty_estimator', 'network', 'backbone', 'upscal', value=4)),
     'train.uncertainty_estimator.network.backbone.upscal', 'EDSR', 'upscale'),
    (then(udl_options, set_key('train', 'uncertainty_estimator', 'network', 'num_fet', value=8)),
     'train.uncertainty_estimator.network.num_fet', 'UncertaintySRNet', 'num_feat'),
    (then(udl_options, set_key('train', 'uncertainty_estimator', 'pretrain_pth', value='x.pth')),
     'train.uncertainty_estimator.pretrain_pth', 'UDLModel (train.uncertainty_estimator)', 'pretrain_path'),
    (set_key('val', 'metrics', 'psnr', 'crop_bordr', value=4), 'val.metrics.psnr.crop_bordr', 'calculate_psnr',
     'crop_border'),
    (set_key('train', 'use_amp', value=True), 'train.use_amp', 'SRModel', None),
    (set_key('train', 'ema_decy', value=0.999), 'train.ema_decy', 'SRModel', 'ema_decay'),
    (set_key('train', 'grad_clp', value={'max_norm': 1}), 'train.grad_clp', 'SRModel', 'grad_clip'),
    (then(tlw_options, set_key('train', 'optim_ww', value={'type': 'Adam'})), 'train.optim_ww', 'TLWModel',
     'optim_w'),
    (set_key('network_g', value={'type': 'SwinIR', 'upscale': 4, 'embed_dims': 8}),  # its **kwargs go nowhere
     'network_g.embed_dims', 'SwinIR', 'embed_dim'),
]


@pytest.mark.parametrize('change, key_path, owner, closest', UNKNOWN_KEYS, ids=[case[1] for case in UNKNOWN_KEYS])
def test_unknown_key_names_its_path_owner_and_closest_name(demo_data, tmp_path, capsys, change, key_path, owner,
                                                           closest):
    code, path, lines = error_line('train', with_change(demo_data, change), tmp_path, capsys)
    assert code == 2 and len(lines) == 1, lines
    assert lines[0].startswith(f'basicsr train: error: {path}: {key_path} is not an option of {owner}')
    assert (f"did you mean '{closest}'?" in lines[0]) == (closest is not None)
    assert 'Traceback' not in lines[0]


def test_unregistered_nested_network_names_its_path(demo_data):
    opt = tiny_options(demo_data, 'nested_type')
    opt['network_g'] = {'type': 'FGDNet', 'backbone': {**TINY_EDSR, 'type': 'EDSRR'}}
    assert option_key_problems(opt) == ["network_g.backbone.type: 'EDSRR' is not in BasicSR's arch registry "
                                        '(close matches: EDSR, VDSR, EDVR)']


def test_each_unknown_key_gets_its_own_line(demo_data, tmp_path, capsys):
    opt = tiny_options(demo_data, 'two', use_amp=True)
    opt['network_g']['num_feats'] = 8
    code, path, lines = error_line('train', opt, tmp_path, capsys)
    assert code == 2 and len(lines) == 2
    assert f'{path}: network_g.num_feats is not' in lines[0] and lines[1].startswith(f'{path}: train.use_amp is not')


def test_keys_the_classes_read_pass(demo_data):
    opt = tiny_options(demo_data, 'known', ema_decay=0.999, grad_clip={'max_norm': 1}, non_finite={'max_skips': 2})
    opt['val']['metrics']['psnr'].update(better='higher', input_order='HWC')
    opt['train']['pixel_opt'] = {'type': 'SPLoss', 'alpha': 2.0, 'base': 'l1', 'loss_weight': 1.0}
    assert option_key_problems(opt) == []
    udl = tiny_options(demo_data, 'udl')
    udl_options(udl)
    udl['train']['uncertainty_estimator']['param_key'] = 'params'
    assert option_key_problems(udl) == []
    tlw_options(opt)
    opt['train'].update(scheduler_w={'type': 'MultiStepLR', 'milestones': [10]}, tlw={'judge': {'type': 'ssim'}})
    assert option_key_problems(opt) == []


def test_metric_images_are_not_options(demo_data):
    """BasicSR passes the images itself; a metric function's **kwargs would swallow any misspelt key."""
    opt = tiny_options(demo_data, 'metric')
    opt['val']['metrics']['psnr']['img2'] = 'x'
    opt['val']['metrics']['niqe'] = {'type': 'calculate_niqe', 'crop_border': 4, 'convert_to': 'y', 'better': 'lower',
                                     'test_y_channel': True}
    problems = option_key_problems(opt)
    assert [p.split(' is not')[0] for p in problems] == ['val.metrics.psnr.img2', 'val.metrics.niqe.test_y_channel']


def test_kwargs_forwarded_to_a_base_class_accept_its_parameters():
    class Base(nn.Module):
        def __init__(self, num_feat=64, upscale=4):
            super().__init__()

    class Forwarding(Base):
        def __init__(self, depth=3, **kwargs):
            super().__init__(**kwargs)

    class Plain(Base):
        def __init__(self, depth=3):
            super().__init__()

    assert accepted_options(Forwarding) == ['depth', 'num_feat', 'upscale']
    assert accepted_options(Plain) == ['depth']


def test_train_keys_are_known_for_srmodel_and_declaring_subclasses_only():
    class OwnModel(SRModel):  # a user's model: it may read any train key
        pass

    class DeclaringModel(SRModel):
        TRAIN_KEYS = ('optim_x', 'extra.a')

    class DeclaringChild(DeclaringModel):
        TRAIN_KEYS = ('extra.b', )

    assert model_train_keys(OwnModel) is None
    gan_keys = model_train_keys(MODEL_REGISTRY.get('ESRGANModel'))  # BasicSR's GAN models: their own keys
    assert {'optim_d', 'gan_opt', 'net_d_iters', 'pixel_opt'} <= set(gan_keys)
    assert not {'amp', 'grad_clip', 'non_finite'} & set(gan_keys)  # their own steps, without the step guard
    keys = model_train_keys(DeclaringChild)
    assert {'ema_decay', 'optim_g', 'scheduler', 'total_iter', 'warmup_iter', 'pixel_opt', 'grad_clip',
            'non_finite', 'optim_x'} <= set(keys) and keys['extra'] == ['a', 'b']
    assert keys.keys() - model_train_keys(SRModel).keys() == {'optim_x', 'extra'}


def test_gan_models_reject_the_step_guard_keys_they_would_ignore_and_check_their_losses(demo_data):
    opt = tiny_options(demo_data, 'gan', gan_opt={'type': 'GANLoss', 'gan_typ': 'vanilla'}, grad_clip={'max_norm': 1})
    opt['model_type'] = 'ESRGANModel'
    assert [p.split(';')[0].split(' (valid')[0] for p in option_key_problems(opt)] == [
        'train.grad_clip is not an option of ESRGANModel', 'train.gan_opt.gan_typ is not an option of GANLoss']


def test_unchecked_train_keys_of_unknown_models_still_check_losses(demo_data):
    from basicsr.utils.registry import MODEL_REGISTRY
    from basicsr.models.sr_model import SRModel

    class UndeclaredUserModel(SRModel):
        pass

    MODEL_REGISTRY._obj_map.setdefault('UndeclaredUserModel', UndeclaredUserModel)
    opt = tiny_options(demo_data, 'user', use_amp=True, perceptual_opt={'type': 'L1Loss', 'weigth': 1})
    opt['model_type'] = 'UndeclaredUserModel'
    assert [p.split(';')[0].split(' (valid')[0] for p in option_key_problems(opt)] == [
        'train.perceptual_opt.weigth is not an option of L1Loss']


def test_strict_options_must_be_a_bool(demo_data, tmp_path, capsys):
    opt = tiny_options(demo_data, 'strict_value')
    opt['strict_options'] = 'no'
    code, path, lines = error_line('train', opt, tmp_path, capsys)
    assert code == 2 and lines == [f"basicsr train: error: {path}: strict_options: expected true or false, got 'no'"]


def test_check_option_keys_without_strict_returns_the_warnings(demo_data, capsys):
    opt = tiny_options(demo_data, 'lenient', use_amp=True)
    opt['strict_options'] = False
    assert check_option_keys(opt, 'o.yml') == ["o.yml: train.use_amp is not an option of SRModel; did you mean 'amp'? (valid: " +
                                               ', '.join(model_train_keys(SRModel)) + ')']
    assert capsys.readouterr().err.startswith('warning: o.yml: train.use_amp is not an option of SRModel')
    assert 'use_amp' not in opt['train']  # dropped
    opt['strict_options'] = True
    opt['train']['use_amp'] = True
    with pytest.raises(OptionError, match='train.use_amp'):
        check_option_keys(opt, 'o.yml')


def test_basicsr_test_checks_keys_too(demo_data, tmp_path, capsys):
    opt = tiny_options(demo_data, 'test_keys')
    opt['network_g']['num_feats'] = 8
    code, path, lines = error_line('test', opt, tmp_path, capsys)
    assert code == 2
    assert lines == [f"basicsr test: error: {path}: network_g.num_feats is not an option of EDSR; did you mean "
                     f"'num_feat'? (valid: {', '.join(accepted_options(ARCH_REGISTRY.get('EDSR')))})"]


@pytest.mark.slow
def test_console_script_reports_a_misspelt_loss_key_in_one_line(demo_data, tmp_path):
    opt = tiny_options(demo_data, 'console', pixel_opt={'type': 'SPLoss', 'alpah': 2})
    path = write_options(opt, tmp_path / 'o.yml')
    result = subprocess.run([str(Path(sys.executable).parent / 'basicsr'), 'train', '-opt', str(path)], cwd=tmp_path,
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 2, result.stderr
    assert result.stderr.strip().splitlines() == [
        f"basicsr train: error: {path}: train.pixel_opt.alpah is not an option of SPLoss; did you mean 'alpha'? "
        '(valid: alpha, base, data_range, loss_weight, reduction)']
    assert not (tmp_path / 'experiments').exists()


@pytest.mark.slow
def test_strict_options_false_warns_drops_the_keys_then_trains_and_tests(demo_data, tmp_path):
    opt = tiny_options(demo_data, 'lenient_run', total_iter=2, use_amp=True, pixel_opt={'type': 'SPLoss', 'alpah': 2})
    opt['strict_options'] = False
    opt['network_g']['num_feats'] = 16  # SPLoss and EDSR would raise a TypeError for these
    opt['val']['metrics']['psnr']['window'] = 3  # extra keys that nothing reads
    result = run_cli(['train', '-opt', write_options(opt, tmp_path / 'train.yml')], cwd=tmp_path)
    warnings = [line for line in result.stderr.splitlines() if line.startswith('warning: ')]
    assert [w.split(' is not an option')[0] for w in warnings] == [
        f'warning: {tmp_path / "train.yml"}: {key}' for key in ('network_g.num_feats', 'train.use_amp',
                                                               'train.pixel_opt.alpah', 'val.metrics.psnr.window')]
    assert all(w.endswith('(strict_options: false, so it is ignored)') for w in warnings)
    trained = tmp_path / 'experiments' / 'lenient_run' / 'models' / 'net_g_latest.pth'
    assert load_params(trained)['conv_first.weight'].shape[0] == 8  # num_feat, not the dropped num_feats
    log = training_log(trained.parent.parent)
    assert 'Loss [SPLoss] is created.' in log and 'alpah' not in log and 'num_feats' not in log

    test_opt = {'name': 'lenient_test', 'model_type': 'SRModel', 'scale': 4, 'num_gpu': 0, 'strict_options': False,
                'datasets': {'test_1': {**opt['datasets']['val'], 'name': 'DemoTest'}},
                'network_g': opt['network_g'], 'path': {'pretrain_network_g': str(trained)},
                'val': {'save_img': False, 'metrics': opt['val']['metrics']}}
    result = run_cli(['test', '-opt', write_options(test_opt, tmp_path / 'test.yml')], cwd=tmp_path)
    assert [line for line in result.stderr.splitlines() if line.startswith('warning: ')] == [
        f'warning: {tmp_path / "test.yml"}: network_g.num_feats is not an option of EDSR; did you mean \'num_feat\'? '
        f'(valid: {", ".join(accepted_options(ARCH_REGISTRY.get("EDSR")))}) (strict_options: false, so it is ignored)',
        f'warning: {tmp_path / "test.yml"}: val.metrics.psnr.window is not an option of calculate_psnr (valid: '
        'crop_border, input_order, test_y_channel, better) (strict_options: false, so it is ignored)']
    assert list((tmp_path / 'results' / 'lenient_test').glob('test_*.log'))


def test_strict_options_false_still_refuses_a_nested_type_no_registry_holds(demo_data, tmp_path, capsys):
    opt = tiny_options(demo_data, 'lenient_type')
    opt['strict_options'] = False
    opt['network_g'] = {'type': 'FGDNet', 'backbone': {**TINY_EDSR, 'type': 'EDSRR'}}
    code, path, lines = error_line('train', opt, tmp_path, capsys)
    assert code == 2 and lines == [f"basicsr train: error: {path}: network_g.backbone.type: 'EDSRR' is not in "
                                   "BasicSR's arch registry (close matches: EDSR, VDSR, EDVR)"]


def test_drop_unread_keys_removes_exactly_the_unread_keys(demo_data):
    opt = tiny_options(demo_data, 'drop', use_amp=True, pixel_opt={'type': 'SPLoss', 'alpah': 2, 'alpha': 1.0})
    opt['network_g'] = {'type': 'FGDNet', 'backbone': {**TINY_EDSR, 'num_blok': 1}}
    expected = copy.deepcopy(opt)
    del expected['train']['use_amp'], expected['train']['pixel_opt']['alpah'], expected['network_g']['backbone']['num_blok']
    assert drop_unread_keys(opt) == [('network_g', 'backbone', 'num_blok'), ('train', 'use_amp'),
                                     ('train', 'pixel_opt', 'alpah')]
    assert opt == expected and option_key_problems(opt) == []


@pytest.mark.parametrize('path', SHIPPED, ids=lambda p: str(p.relative_to(REPO / 'options')))
def test_shipped_option_file_has_no_unread_key(path):
    assert check_option_keys(read_option_file(str(path)), str(path)) == []
