"""The CUDA situation on a CPU: every model family with a default device that is not the model's device.

On a GPU the model and its batches are on CUDA while torch's default device is the CPU; a tensor our code
creates without ``device=`` then sits on the wrong device. Here (``tests/default_device.py``) the model and
the batch are built on the CPU outside the context, as BasicSR builds them on CUDA, and inside it every
tensor losses_plugin creates without a device lands on 'meta'. Inside run what training runs: ``feed_data``
and ``optimize_parameters``, the weight-map logging (``log_weight_maps``, which validation iterations do
first) and BasicSR's validation on a two-image set (``model.test()``, and our metrics as BasicSR calls
them). Each run must redirect nothing and give exactly the numbers of the same run outside the context.
"""
import contextlib
import copy
import inspect
import textwrap

import numpy as np
import pytest
import torch
from basicsr.losses import build_loss
from basicsr.metrics import calculate_metric
from default_device import OurDefaultDevice
from test_model_steps import OUR_LOSSES, build, fgd_options, fixed_batch, step_options, tiny_edsr
from test_stage_supervised_model import TINY_MPRNET, blurred_batch
from test_stage_supervised_model import options as stage_supervised_options
from test_tlw_model import tlw_step_options
from test_udl_model import stage_one_checkpoint, udl_options
from torch.utils.data import DataLoader, Dataset

from losses_plugin.archs import fgd_arch
from losses_plugin.archs.fgd_arch import FGDNet
from losses_plugin.fgd_bins import bin_thresholds
from losses_plugin.losses.tlw_judge import build_judge
from losses_plugin.visualization import log_weight_maps

LR = 1e-3
VAL_METRICS = {'psnr': {'type': 'calculate_psnr', 'crop_border': 0},  # BasicSR's, and ours below
               'rmse': {'type': 'calculate_rmse', 'crop_border': 0},
               'l1_1000': {'type': 'calculate_l1_1000', 'crop_border': 0},
               'l2_1000': {'type': 'calculate_l2_1000', 'crop_border': 0}}


def sr_model(network_g, pixel_opt=None):
    return lambda tmp_path: step_options(tmp_path, 'SRModel', network_g, pixel_opt or OUR_LOSSES['SPLoss'], LR)


def same_size(network_g, pixel_opt=None):
    """SRModel at scale 1 (denoisers, demosaicking, deblurring) on the blurred 16x16 batch."""
    def options(tmp_path):
        opt = sr_model(network_g, pixel_opt)(tmp_path)
        opt['scale'] = 1
        return opt
    return options, blurred_batch


def fgd_static(tmp_path):
    """The paper's 'CS' loss: one anchor-area size, no Class-Module."""
    opt = fgd_options(tmp_path)
    opt['network_g'].update(area_sizes=[5])
    del opt['network_g']['class_module']
    return opt


def fgd_lapsrn(tmp_path):
    opt = fgd_options(tmp_path)
    opt['network_g']['backbone'] = {'type': 'LapSRN', 'num_feat': 4, 'depth': 2, 'upscale': 2}
    return opt


def udl_stage_two(tmp_path):
    return udl_options(tmp_path, 'udl', stage_one_checkpoint(tmp_path)[1])


def with_train(options, **train):
    """``options`` with ``train`` options added (AMP, gradient clipping, EMA)."""
    def changed(tmp_path):
        opt = options(tmp_path)
        opt['train'].update(copy.deepcopy(train))
        return opt
    return changed


# name: (options(tmp_path), batch()); every model family, each of our losses, each of our architectures
CASES = {
    **{f'SRModel-{name}': (sr_model(tiny_edsr(), pixel_opt), fixed_batch) for name, pixel_opt in OUR_LOSSES.items()},
    'SRModel-MSSSIMLoss': (sr_model(tiny_edsr(), {'type': 'MSSSIMLoss', 'padding': 'reflect'}), fixed_batch),
    'SRModel-SPLoss-bfloat16': (with_train(sr_model(tiny_edsr(), OUR_LOSSES['SPLoss']), amp={'dtype': 'bfloat16'}), fixed_batch),
    'SRModel-SPLoss-float16': (with_train(sr_model(tiny_edsr(), OUR_LOSSES['SPLoss']), amp={'dtype': 'float16'}), fixed_batch),
    'SRModel-SPLoss-grad_clip-ema': (with_train(sr_model(tiny_edsr(), OUR_LOSSES['SPLoss']), grad_clip={'max_norm': 0.01},
                                                ema_decay=0.5), fixed_batch),
    **{f'TLWModel-{judge}': (lambda tmp_path, judge=judge: tlw_step_options(tmp_path, judge=judge), fixed_batch)
       for judge in ('l1', 'ssim', 'ms_ssim')},
    'TLWModel-lpips': (with_train(tlw_step_options, tlw={'judge': {'type': 'lpips', 'pretrained': False},
                                                         'iters_per_epoch': 1}), fixed_batch),
    'TLWModel-bfloat16': (with_train(tlw_step_options, amp={'dtype': 'bfloat16'}), fixed_batch),
    'UDLModel-esu': (lambda tmp_path: udl_options(tmp_path, 'esu'), fixed_batch),
    'UDLModel-udl': (udl_stage_two, fixed_batch),
    'FGDModel': (fgd_options, fixed_batch),
    'FGDModel-CS': (fgd_static, fixed_batch),
    'FGDModel-LapSRN': (fgd_lapsrn, fixed_batch),
    'FGDModel-bfloat16': (with_train(fgd_options, amp={'dtype': 'bfloat16'}), fixed_batch),
    'StageSupervisedModel-MPRNet-SPLoss': (lambda tmp_path: stage_supervised_options(tmp_path, {'type': 'SPLoss'}),
                                           blurred_batch),
    'SRModel-SRCNN': (sr_model({'type': 'SRCNN', 'upscale': 2, 'num_feat': 4, 'num_feat2': 4}), fixed_batch),
    'SRModel-VDSR': (sr_model({'type': 'VDSR', 'num_feat': 4, 'num_conv': 3, 'upscale': 2}), fixed_batch),
    'SRModel-LapSRN': (sr_model({'type': 'LapSRN', 'num_feat': 4, 'depth': 2, 'upscale': 2}), fixed_batch),
    'SRModel-NLSN': (sr_model({'type': 'NLSN', 'num_feat': 8, 'num_block': 2, 'attention_every': 1, 'chunk_size': 5,
                               'n_hashes': 2, 'upscale': 2}), fixed_batch),
    'SRModel-HAT': (sr_model({'type': 'HAT', 'embed_dim': 12, 'depths': [1, 1], 'num_heads': [2, 2], 'window_size': 4,
                              'num_feat': 8, 'squeeze_factor': 4, 'upscale': 2}), fixed_batch),
    'SRModel-DnCNN-AsymmetricLoss': same_size({'type': 'DnCNN', 'num_conv': 3, 'num_feat': 4},
                                              {'type': 'AsymmetricLoss', 'mask': 'quartile', 'base': 'mse'}),
    'SRModel-GRUNet': same_size({'type': 'GRUNet', 'num_feat': 2, 'num_down': 2}),
    'SRModel-ZhaoDemosaickNet-MSSSIML1Loss': same_size({'type': 'ZhaoDemosaickNet', 'num_feat': 4},
                                                       {'type': 'MSSSIML1Loss', 'padding': 'zero'}),
    'SRModel-MPRNet': same_size(TINY_MPRNET),
}


class Pairs(Dataset):
    """The images of a batch as a BasicSR validation set (``opt['name']``, ``lq_path``)."""

    opt = {'name': 'pairs'}

    def __init__(self, batch):
        self.items = [{'lq': lq, 'gt': gt, 'lq_path': f'pair{i}.png'} for i, (lq, gt) in enumerate(zip(*batch.values()))]

    def __len__(self):
        return len(self.items)

    def __getitem__(self, i):
        return self.items[i]


class ImageLog:
    """A TensorBoard writer keeping what ``log_weight_maps`` adds."""

    def __init__(self):
        self.images = {}

    def add_images(self, tag, images, step):
        self.images[tag] = images


def train_log_validate(opt, batch, context):
    """One iteration as training runs it, inside ``context``: (log, weights, weight maps, validation metrics)."""
    opt = copy.deepcopy(opt)
    opt['val'] = {'save_img': False, 'metrics': copy.deepcopy(VAL_METRICS)}
    model = build(opt)  # on the CPU, outside the context
    data, tb_logger = batch(), ImageLog()
    loader = DataLoader(Pairs(data), batch_size=1)
    torch.manual_seed(1)  # TLW's relaxed-Bernoulli samples, the same in both runs
    with context:
        model.feed_data(data)
        model.optimize_parameters(1)
        log = model.get_current_log()
        log_weight_maps(model, tb_logger, 1)
        model.validation(loader, 1, None, False)
    weights = {name: p.detach().clone() for name, p in model.net_g.named_parameters()}
    return log, weights, tb_logger.images, dict(model.metric_results)


@pytest.mark.parametrize('case', CASES)
def test_training_weight_maps_and_validation_create_every_tensor_on_the_models_device(case, tmp_path):
    options, batch = CASES[case]
    opt = options(tmp_path)
    mode = OurDefaultDevice()
    inside = train_log_validate(opt, batch, mode)
    assert mode.redirected == [], f'created without device= (on the CPU next to CUDA tensors on a GPU): {mode.redirected}'
    log, weights, images, metrics = train_log_validate(opt, batch, contextlib.nullcontext())
    assert inside[0] == log and set(inside[1]) == set(weights) and set(inside[2]) == set(images)
    assert all(torch.equal(inside[1][name], weights[name]) for name in weights)
    assert all(torch.equal(inside[2][tag], images[tag]) for tag in images) and images  # every model logs maps
    assert inside[3] == metrics and set(metrics) == set(VAL_METRICS) and np.isfinite(list(metrics.values())).all()


# at 96 px the narrow windows filter by convolution, not by the banded matrices of 32 px patches
LOSSES_AT_96_PX = [{'type': 'SPLoss', 'base': 'charbonnier'}, {'type': 'SPLoss', 'base': 'mse', 'data_range': 255},
                   {'type': 'AsymmetricLoss', 'mask': 'quartile', 'apply': 'io', 'base': 'mse'},
                   {'type': 'AsymmetricLoss', 'per_channel': True, 'base': 'charbonnier'},
                   {'type': 'SSIMLoss', 'padding': 'valid'}, {'type': 'SSIMLoss', 'sigma': 5, 'padding': 'zero'},
                   {'type': 'MSSSIMLoss', 'padding': 'reflect'}, {'type': 'MSSSIML1Loss', 'padding': 'zero'},
                   {'type': 'EdgeLoss'}, {'type': 'judge', 'judge': {'type': 'ssim'}},
                   {'type': 'judge', 'judge': {'type': 'ms_ssim'}},
                   {'type': 'judge', 'judge': {'type': 'lpips', 'pretrained': False}}]  # random VGG16, no file


class JudgeAsLoss(torch.nn.Module):
    """A TLW judge's mean distance ``D(pred, target)``, as TLWModel's weight criterion calls it."""

    def __init__(self, judge):
        super().__init__()
        self.judge = build_judge(judge)

    def forward(self, pred, target):
        return self.judge.distance(pred, self.judge.reference(target)).mean()


def loss_id(opt):
    return f"judge-{opt['judge']['type']}" if opt['type'] == 'judge' else '-'.join(map(str, opt.values()))


@pytest.mark.parametrize('loss_opt', LOSSES_AT_96_PX, ids=loss_id)
def test_our_losses_and_judges_on_larger_images_give_the_same_values_and_gradients_in_the_context(loss_opt):
    loss = JudgeAsLoss(loss_opt['judge']) if loss_opt['type'] == 'judge' else build_loss(copy.deepcopy(loss_opt))
    generator = torch.Generator().manual_seed(0)
    target = torch.rand(2, 3, 96, 96, generator=generator)
    pred = (target + 0.1 * torch.rand(2, 3, 96, 96, generator=generator)).requires_grad_()

    def value_gradient_map():
        pred.grad = None
        value = loss(pred, target)
        value.backward()
        weight_map = loss.weight_map(pred, target) if hasattr(loss, 'weight_map') else None
        return value.detach(), pred.grad, weight_map

    value, gradient, weight_map = value_gradient_map()
    with OurDefaultDevice() as mode:
        inside = value_gradient_map()
    assert mode.redirected == [], f'created without device=: {mode.redirected}'
    assert torch.equal(inside[0], value) and torch.equal(inside[1], gradient)
    assert weight_map is None or torch.equal(inside[2], weight_map)


OUR_METRICS = {'rmse': {'type': 'calculate_rmse'}, 'ms_ssim': {'type': 'calculate_ms_ssim'},
               'iw_ssim': {'type': 'calculate_iw_ssim'}, 'gmsd': {'type': 'calculate_gmsd'},
               'fsim': {'type': 'calculate_fsim'}, 'fsimc': {'type': 'calculate_fsim', 'chromatic': True},
               'l1_1000': {'type': 'calculate_l1_1000'}, 'l2_1000': {'type': 'calculate_l2_1000'}}


def test_our_weight_free_metrics_give_the_same_values_in_the_context():
    """BasicSR hands metrics numpy images; piq's five-level ones need more than 160 px a side."""
    generator = np.random.default_rng(0)
    gt = generator.integers(0, 256, (176, 176, 3), dtype=np.uint8)
    img = np.clip(gt + generator.normal(0, 12, gt.shape), 0, 255).astype(np.uint8)

    def scores():
        return {name: calculate_metric({'img': img, 'img2': gt}, dict(opt, crop_border=2))
                for name, opt in OUR_METRICS.items()}

    expected = scores()
    with OurDefaultDevice() as mode:
        assert scores() == expected
    assert mode.redirected == []


# ---- the context itself ------------------------------------------------------------------------------------

def recompiled(function, drop, module_name=None):
    """``function`` compiled again from its source with the text ``drop`` taken out, in a copy of its module's
    globals (named ``module_name`` when given: the code then counts as that module's)."""
    source = textwrap.dedent(inspect.getsource(function))
    assert source.count(drop) == 1, f'{drop!r} is not once in {function.__qualname__}'
    namespace = dict(function.__globals__)
    if module_name is not None:
        namespace['__name__'] = module_name
    exec(compile(source.replace(drop, ''), inspect.getsourcefile(function), 'exec'), namespace)
    return namespace[function.__name__]


DROPPED = 'device=sr.device, '  # of FGDNet.forward's bin-prior index, torch.arange(num_bins, ...)


def test_a_device_dropped_from_fgdnet_fails_the_fgd_step_in_the_context_and_nowhere_else(tmp_path, monkeypatch):
    opt = fgd_options(tmp_path)
    expected = train_log_validate(opt, fixed_batch, contextlib.nullcontext())
    monkeypatch.setattr(FGDNet, 'forward', recompiled(FGDNet.forward, DROPPED))
    assert train_log_validate(opt, fixed_batch, contextlib.nullcontext())[0] == expected[0]  # a CPU cannot tell
    mode = OurDefaultDevice()
    with pytest.raises(RuntimeError, match='Tensor on device meta is not on the expected device cpu'):
        train_log_validate(opt, fixed_batch, mode)
    assert [(name, site.split(':')[0]) for name, site in mode.redirected] == [('arange', fgd_arch.__name__)]


def test_the_same_dropped_device_in_basicsr_code_is_not_ours_to_flag(tmp_path, monkeypatch):
    opt = fgd_options(tmp_path)
    expected = train_log_validate(opt, fixed_batch, contextlib.nullcontext())
    monkeypatch.setattr(FGDNet, 'forward', recompiled(FGDNet.forward, DROPPED, module_name='basicsr.archs.copy_arch'))
    mode = OurDefaultDevice()
    assert train_log_validate(opt, fixed_batch, mode)[0] == expected[0]
    assert mode.redirected == []


def test_whose_call_it_is_decides_and_torch_frames_in_between_count_as_the_caller():
    from losses_plugin.archs import tlw_weighting_arch

    ours = dict(vars(tlw_weighting_arch))  # code that runs as losses_plugin.archs.tlw_weighting_arch's
    exec('def uniform_noise(x):\n    return x + torch.distributions.Uniform(0.0005, 0.9995).sample(x.shape)\n', ours)
    x = torch.rand(3)
    with OurDefaultDevice() as mode:
        assert bin_thresholds(4).device.type == 'meta'  # ours, no device
        assert torch.arange(3).device.type == 'cpu'  # the test's own
        assert torch.arange(3, device='cpu').device.type == 'cpu'
        with pytest.raises(RuntimeError, match='meta'):  # Uniform(low, high) makes its bounds with torch.tensor()
            ours['uniform_noise'](x)
    assert [site.split(':')[0] for _, site in mode.redirected] == [
        'losses_plugin.fgd_bins', 'losses_plugin.archs.tlw_weighting_arch', 'losses_plugin.archs.tlw_weighting_arch']


@pytest.mark.parametrize('case, error, message', [
    # torch.utils.data's loader iterator draws its base seed with torch.empty((), dtype=int64).random_().item()
    ('SRModel-SPLoss', RuntimeError, r'Tensor.item\(\) cannot be called on meta tensors'),
    # spandrel's HAT builds its shifted-window attention mask with torch.zeros((1, h, w, 1)), then .to(x.device)
    ('SRModel-HAT', NotImplementedError, 'Cannot copy out of meta tensor'),
])
def test_plain_torch_device_meta_breaks_torch_and_spandrel_code_that_the_scoped_context_leaves_alone(
        case, error, message, tmp_path):
    """Why the context is scoped: both run in the test above; under plain ``with torch.device('meta')`` they do not,
    for device-less tensors that are right where they are (a CPU seed; a mask moved to the input's device)."""
    options, batch = CASES[case]
    with pytest.raises(error, match=message):
        train_log_validate(options(tmp_path), batch, torch.device('meta'))
