"""MPRNet (SPLoss Table 2): the authors' deblurring hyperparameters, their checkpoint layout loading
through BasicSR's pretrain_network_g, the stage-output contract and the padding to multiples of 8."""
import inspect
import subprocess
import sys

import pytest
import torch
from basicsr.archs import build_network
from basicsr.models import build_model
from basicsr.utils.registry import ARCH_REGISTRY

from conftest import construction
from losses_plugin.checks import OptionError

TINY = {'type': 'MPRNet', 'n_feat': 8, 'scale_unetfeats': 4, 'scale_orsnetfeats': 4, 'num_cab': 1, 'reduction': 2}
# Deblurring/MPRNet.py of swz30/MPRNet (spandrel's own defaults are the deraining model's)
AUTHORS_DEBLURRING = {'in_c': 3, 'out_c': 3, 'n_feat': 96, 'scale_unetfeats': 48, 'scale_orsnetfeats': 32,
                      'num_cab': 8, 'kernel_size': 3, 'reduction': 4, 'bias': False}


def tiny(seed=0):
    torch.manual_seed(seed)
    return build_network(dict(TINY))


def test_defaults_are_the_authors_deblurring_configuration():
    defaults = {name: p.default for name, p in inspect.signature(ARCH_REGISTRY.get('MPRNet')).parameters.items()}
    assert defaults == AUTHORS_DEBLURRING


def assert_built_alike(ours, theirs):
    """Our wrapper holds spandrel's modules under their names: the same modules, each built the same way."""
    assert [name for name, _ in ours.named_children()] == [name for name, _ in theirs.named_children()]
    for (name, module), (_, reference) in zip(ours.named_children(), theirs.named_children()):
        assert construction(module) == construction(reference), name


def test_the_defaults_build_the_authors_deblurring_network():
    """Built, not read from the signature: every default reaches spandrel's modules."""
    from spandrel_extra_arches.architectures.MPRNet import MPRNet as SpandrelMPRNet

    assert_built_alike(build_network({'type': 'MPRNet'}), SpandrelMPRNet(**AUTHORS_DEBLURRING))


def test_every_option_reaches_spandrels_network():
    from spandrel_extra_arches.architectures.MPRNet import MPRNet as SpandrelMPRNet

    options = {'in_c': 3, 'out_c': 3, 'n_feat': 6, 'scale_unetfeats': 5, 'scale_orsnetfeats': 3, 'num_cab': 2,
               'kernel_size': 5, 'reduction': 3, 'bias': True}
    assert set(options) == set(inspect.signature(ARCH_REGISTRY.get('MPRNet')).parameters)
    assert_built_alike(build_network(dict(options, type='MPRNet')), SpandrelMPRNet(**options))


def test_state_dict_is_the_authors_layout_as_spandrel_detects_it():
    from spandrel_extra_arches.architectures.MPRNet import MPRNetArch

    net = tiny()
    state = net.state_dict()
    assert not any(key.startswith('net.') for key in state)
    arch = MPRNetArch()
    assert arch.detect(state)  # spandrel recognises the authors' checkpoints by these keys
    described = arch.load(state)  # and reads the hyperparameters back from the shapes
    assert described.model.hyperparameters == dict(AUTHORS_DEBLURRING, **{k: v for k, v in TINY.items() if k != 'type'})


def test_authors_checkpoint_format_loads_through_pretrain_network_g(tmp_path):
    source = tiny(seed=1)
    path = tmp_path / 'model_deblurring.pth'
    # as the authors' train.py saves it, from nn.DataParallel: 'module.' prefixes under 'state_dict'
    torch.save({'epoch': 3000, 'state_dict': {f'module.{k}': v for k, v in source.state_dict().items()}}, path)
    opt = {'name': 'load', 'model_type': 'SRModel', 'scale': 1, 'num_gpu': 0, 'is_train': False, 'dist': False,
           'network_g': dict(TINY),
           'path': {'pretrain_network_g': str(path), 'param_key_g': 'state_dict', 'strict_load_g': True}}
    torch.manual_seed(2)
    loaded = build_model(opt).net_g
    for key, value in source.state_dict().items():
        assert torch.equal(loaded.state_dict()[key], value), key


def test_forward_is_the_final_stage_and_return_stages_gives_all_three_final_first():
    from spandrel_extra_arches.architectures.MPRNet import MPRNet as SpandrelMPRNet

    net = tiny().eval()
    theirs = SpandrelMPRNet(**{k: v for k, v in TINY.items() if k != 'type'}).eval()
    theirs.load_state_dict(net.state_dict())
    x = torch.rand(2, 3, 16, 24)
    with torch.no_grad():
        stages = net(x, return_stages=True)
        final = net(x)
        expected = theirs(x)  # MPRNet's own order: [stage 3 + input, stage 2, stage 1]
    assert len(stages) == 3 and all(s.shape == x.shape for s in stages)
    assert torch.equal(final, expected[0])
    for ours, reference in zip(stages, expected):
        assert torch.equal(ours, reference)
    assert not torch.equal(stages[0], stages[1]) and not torch.equal(stages[1], stages[2])


@pytest.mark.parametrize('size, pad', [((13, 21), (0, 3, 0, 3)), ((13, 16), (0, 0, 0, 3)), ((16, 21), (0, 3, 0, 0))])
def test_sides_not_multiples_of_8_are_reflect_padded_and_cropped_back(size, pad):
    net = tiny().eval()
    x = torch.rand(1, 3, *size)
    with torch.no_grad():
        stages = net(x, return_stages=True)
        padded = net(torch.nn.functional.pad(x, pad, mode='reflect'), return_stages=True)
    for ours, full in zip(stages, padded):
        assert ours.shape == x.shape
        assert torch.equal(ours, full[..., :size[0], :size[1]])
    with pytest.raises(ValueError, match='at least 8x8'):
        net(torch.rand(1, 3, 7, 16))


def test_the_smallest_input_is_8x8():
    net = tiny().eval()
    with torch.no_grad():
        assert net(torch.rand(1, 3, 8, 8)).shape == (1, 3, 8, 8)
    for size in ((7, 8), (8, 7)):
        with pytest.raises(ValueError, match=f'at least 8x8 pixels, got {size[0]}x{size[1]}'):
            net(torch.rand(1, 3, *size))


def test_building_one_shows_no_warning_from_spandrels_other_architectures():
    """spandrel-extra-arches imports CodeFormer, which calls the deprecated torch.jit.script; the build hides
    that FutureWarning (a fresh process: the import happens once per process)."""
    build = ("import losses_plugin; from basicsr.archs import build_network; "
             f"build_network({dict(TINY)!r})")
    subprocess.run([sys.executable, '-W', 'error::FutureWarning', '-c', build], check=True)


def test_options_are_checked():
    with pytest.raises(OptionError, match="MPRNet: option .num_cab. must be an integer >= 1"):
        build_network(dict(TINY, num_cab=0))
    with pytest.raises(OptionError, match='in_c and out_c must be 3'):
        build_network(dict(TINY, in_c=1, out_c=1))
