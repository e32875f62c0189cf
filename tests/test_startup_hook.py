"""The start-up hook's registry part (losses_plugin_shim): our names resolve on their first lookup, BasicSR's
and a project's names behave as before, misses name the close matches, and start-up imports nothing."""
import importlib.util
import os
import subprocess
import sys
import textwrap

import pytest
from basicsr.utils import registry
from basicsr.utils.registry import ARCH_REGISTRY, LOSS_REGISTRY, MODEL_REGISTRY, Registry

import losses_plugin_shim

REGISTRIES = (registry.ARCH_REGISTRY, registry.DATASET_REGISTRY, registry.LOSS_REGISTRY, registry.METRIC_REGISTRY,
              registry.MODEL_REGISTRY)


def python(code, env=None, **kwargs):
    """The stripped stdout of ``python -c CODE`` in a fresh process of this environment (the .pth runs)."""
    environment = {k: v for k, v in os.environ.items() if k != losses_plugin_shim.NO_REGISTRY_HOOK}
    result = subprocess.run([sys.executable, '-c', textwrap.dedent(code)], capture_output=True, text=True,
                            env={**environment, 'OMP_NUM_THREADS': '1', **(env or {})}, timeout=300, **kwargs)
    assert result.returncode == 0, result.stderr
    return result.stdout.strip()


def test_the_table_of_our_names_is_what_import_registers():
    registered = {reg._name: sorted(name for name, obj in reg if obj.__module__.startswith('losses_plugin.'))
                  for reg in REGISTRIES}
    assert registered == {name: sorted(names) for name, names in losses_plugin_shim.OUR_NAMES.items()}


def test_start_up_imports_neither_torch_nor_basicsr_nor_us_and_puts_the_finder_first():
    out = python("""
        import sys
        print(sorted(m for m in sys.modules if m.split('.')[0] in ('torch', 'basicsr', 'losses_plugin', 'difflib')))
        print(type(sys.meta_path[0]).__name__)
    """)
    assert out.splitlines() == ['[]', 'RegistryFinder']


def test_basicsrs_and_a_projects_names_never_import_us_and_our_first_lookup_does():
    out = python("""
        import sys
        from basicsr.losses import build_loss
        from basicsr.archs import build_network
        from basicsr.utils.registry import ARCH_REGISTRY, LOSS_REGISTRY, MODEL_REGISTRY
        import realesrgan  # the project's own *_arch.py / *_model.py scan
        build_loss({'type': 'L1Loss'})
        net = build_network({'type': 'SRVGGNetCompact', 'num_feat': 4, 'num_conv': 1})
        print(type(net).__module__, 'L1Loss' in LOSS_REGISTRY, 'RealESRGANModel' in MODEL_REGISTRY)
        print('losses_plugin' in sys.modules)
        print('TLWModel' in MODEL_REGISTRY, 'losses_plugin' in sys.modules)
        print(LOSS_REGISTRY.get('SPLoss').__module__)
    """)
    assert out.splitlines() == ['realesrgan.archs.srvgg_arch True True', 'False', 'True True',
                                'losses_plugin.losses.sp_loss']


def test_a_get_of_our_name_imports_us_once_and_returns_the_registered_class():
    out = python("""
        import sys
        from basicsr.utils.registry import ARCH_REGISTRY, METRIC_REGISTRY
        print(ARCH_REGISTRY.get('FGDNet').__module__)
        print(METRIC_REGISTRY.get('calculate_rmse') is sys.modules['losses_plugin.metrics.rmse_metric'].calculate_rmse)
    """)
    assert out.splitlines() == ['losses_plugin.archs.fgd_arch', 'True']


def test_a_miss_is_a_keyerror_naming_the_registry_the_name_and_the_close_matches():
    with pytest.raises(KeyError) as miss:
        LOSS_REGISTRY.get('SPLos')
    assert miss.value.args == ("No object named 'SPLos' found in 'loss' registry! (close matches: SPLoss, MSELoss, "
                               'SSIMLoss)', )
    with pytest.raises(KeyError) as miss:
        MODEL_REGISTRY.get('tlwmodel')  # case-insensitive equals count too
    assert miss.value.args[0].endswith("found in 'model' registry! (close matches: TLWModel)")
    with pytest.raises(KeyError) as miss:
        ARCH_REGISTRY.get('Qqqq')
    assert miss.value.args[0].startswith("No object named 'Qqqq' found in 'arch' registry! (registered: BasicVSR, ")
    assert 'EDSR, ' in miss.value.args[0] and 'FGDNet, ' in miss.value.args[0]


def test_a_miss_in_a_projects_own_registry_names_its_names():
    backbones = Registry('backbone')
    backbones.register(type('ResNetTiny', (), {}))
    with pytest.raises(KeyError, match=r"^\"No object named 'ResNetTini' found in 'backbone' registry! "
                       r"\(close matches: ResNetTiny\)\"$"):
        backbones.get('ResNetTini')


def test_a_miss_names_our_names_before_we_are_imported():
    out = python("""
        import sys
        from basicsr.utils.registry import MODEL_REGISTRY
        try:
            MODEL_REGISTRY.get('TLWModle')
        except KeyError as e:
            print(e.args[0])
        print('losses_plugin' in sys.modules)
    """)
    assert out.splitlines()[-2:] == [
        "No object named 'TLWModle' found in 'model' registry! (close matches: TLWModel, UDLModel)", 'False']


def test_the_switch_turns_the_registry_part_off_and_leaves_the_torchvision_part():
    out = python("""
        import sys
        from basicsr.utils.registry import LOSS_REGISTRY, Registry
        print('_basicsr_get' in vars(Registry), type(sys.meta_path[0]).__name__ == 'RegistryFinder')
        try:
            LOSS_REGISTRY.get('SPLoss')
        except KeyError as e:
            print(e.args[0])
    """, env={losses_plugin_shim.NO_REGISTRY_HOOK: '1'})
    # (BasicSR prints 'Name SPLoss is not found, use name: SPLoss_basicsr!' before its KeyError)
    assert out.splitlines()[::2] == ['False False', "No object named 'SPLoss' found in 'loss' registry!"]


def test_a_registry_module_unlike_basicsrs_is_left_as_it_is(tmp_path):
    """The hook runs in every process: another ``basicsr.utils.registry`` imports and runs untouched."""
    package = tmp_path / 'basicsr' / 'utils'
    package.mkdir(parents=True)
    (tmp_path / 'basicsr' / '__init__.py').write_text('')
    (package / '__init__.py').write_text('')
    (package / 'registry.py').write_text('class Registry:\n    pass\nVALUE = 42\n')
    out = python("""
        import basicsr.utils.registry as r
        print(r.VALUE, vars(r.Registry).get('get'), type(r.__loader__).__name__)
    """, cwd=tmp_path)
    assert out == '42 None _TeachAfterExec'


def test_teach_wraps_once_and_keeps_basicsrs_lookup():
    spec = importlib.util.spec_from_file_location('fresh_registry', registry.__file__)  # BasicSR's file, untaught
    fresh = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(fresh)
    basicsr_get = fresh.Registry.get
    losses_plugin_shim.teach(fresh)
    wrapped = fresh.Registry.get
    losses_plugin_shim.teach(fresh)
    assert fresh.Registry.get is wrapped is not basicsr_get and fresh.Registry._basicsr_get is basicsr_get
    reg = fresh.Registry('loss')
    reg.register(type('L1Loss', (), {}))
    assert reg.get('L1Loss').__name__ == 'L1Loss' and 'L1Loss' in reg and 'SPLoss' not in reg
