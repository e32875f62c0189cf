"""A wheel that installs like a library: `pip wheel .` of the checkout, installed (not editable) into a fresh
environment that already has torch and BasicSR, gives the console script, the start-up hook and every name.

The fresh environment is a venv whose one extra path is this environment's site-packages, given as a path line
in a .pth file: Python adds such a path to sys.path but runs none of the .pth files in it, so neither our
editable install's finder nor its copy of the start-up hook takes part; what answers is the wheel alone.
"""
import subprocess
import sys
import sysconfig
import textwrap
import zipfile
from pathlib import Path

import pytest
from conftest import REPO

import losses_plugin_shim

pytestmark = pytest.mark.slow

CHECK = """
import sys
print(type(sys.meta_path[0]).__name__, 'losses_plugin' in sys.modules)
from basicsr.utils import registry
print(registry.LOSS_REGISTRY.get('SPLoss').__module__)
import losses_plugin, losses_plugin_shim
print(losses_plugin.__file__)
print(losses_plugin_shim.__file__)
print([m for m in sys.modules if 'editable' in m])
for reg in (registry.ARCH_REGISTRY, registry.DATASET_REGISTRY, registry.LOSS_REGISTRY, registry.METRIC_REGISTRY,
            registry.MODEL_REGISTRY):
    for name, obj in reg:
        if obj.__module__.startswith('losses_plugin'):
            print(reg._name, name, sys.modules[obj.__module__].__file__)
"""


def run(command, **kwargs):
    result = subprocess.run([str(c) for c in command], capture_output=True, text=True, timeout=300, **kwargs)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-3000:]
    return result.stdout


def test_the_wheel_alone_gives_console_script_start_up_hook_and_every_name(tmp_path):
    source = tmp_path / 'checkout'  # the files git knows, so the build leaves nothing in the working tree
    files = run(['git', 'ls-files', '--cached', '--others', '--exclude-standard', '-z'], cwd=REPO).split('\0')
    for name in filter(None, files):
        if (REPO / name).is_file():
            (source / name).parent.mkdir(parents=True, exist_ok=True)
            (source / name).write_bytes((REPO / name).read_bytes())
    run([sys.executable, '-m', 'pip', 'wheel', '.', '--no-deps', '--no-build-isolation', '--no-index', '-q', '-w',
         tmp_path / 'dist'], cwd=source)
    wheel, = (tmp_path / 'dist').glob('losses_plugin-*.whl')
    assert 'losses_plugin_shim.pth' in zipfile.ZipFile(wheel).namelist()

    env = tmp_path / 'env'
    run([sys.executable, '-m', 'venv', '--without-pip', env])
    python = env / 'bin' / 'python'
    site = Path(run([python, '-c', 'import sysconfig; print(sysconfig.get_paths()["purelib"])']).strip())
    ours = {sysconfig.get_paths()['purelib'], sysconfig.get_paths()['platlib']}
    (site / 'venv_dependencies.pth').write_text('\n'.join(sorted(ours)) + '\n')  # torch, BasicSR, ...
    run([sys.executable, '-m', 'pip', '--python', python, 'install', '--no-deps', '--no-index', '-q', wheel])
    assert (site / 'losses_plugin_shim.pth').read_text() == (REPO / 'losses_plugin_shim.pth').read_text()

    environment = {'OMP_NUM_THREADS': '1', 'PATH': '/usr/bin:/bin'}
    assert run([env / 'bin' / 'basicsr', '--version'], env=environment).strip() == (
        'losses_plugin 0.1.0, BasicSR 1.4.2')
    lines = run([python, '-c', textwrap.dedent(CHECK)], cwd=tmp_path, env=environment).splitlines()
    lines = [line for line in lines if not line.startswith('Name ')]
    assert lines[:5] == ['RegistryFinder False', 'losses_plugin.losses.sp_loss', f'{site}/losses_plugin/__init__.py',
                         f'{site}/losses_plugin_shim.py', '[]']
    registered = {}
    for line in lines[5:]:
        registry, name, path = line.split()
        assert path.startswith(f'{site}/losses_plugin/'), line
        registered.setdefault(registry, set()).add(name)
    assert registered == {name: set(names) for name, names in losses_plugin_shim.OUR_NAMES.items()}
