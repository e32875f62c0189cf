"""The compatibility patches: import order, the torchvision hook, safe YAML, CPU training states."""
import collections
import importlib.util
import subprocess
import sys

import torch
import yaml
from basicsr.models.lr_scheduler import MultiStepRestartLR

import losses_plugin_shim
from losses_plugin import compat
from losses_plugin.resume import find_resume_state_path, load_training_state
from losses_plugin.yaml_loader import SafeOrderedLoader
from losses_plugin.registration import REGISTERED_MODULES

LIST_REGISTRIES = '''
from basicsr.utils import registry as r
for reg in (r.ARCH_REGISTRY, r.DATASET_REGISTRY, r.LOSS_REGISTRY, r.METRIC_REGISTRY, r.MODEL_REGISTRY):
    for name, obj in reg:
        print(reg._name, name, obj.__module__)
'''


def registries_after(imports):
    out = subprocess.run([sys.executable, '-c', imports + LIST_REGISTRIES], check=True, capture_output=True,
                         text=True).stdout
    return {tuple(line.split()[:2]): line.split()[2] for line in out.splitlines()}


def test_import_order_does_not_matter_and_names_never_clash():
    basicsr_only = registries_after('import basicsr\n')
    ours_first = registries_after('import losses_plugin, basicsr\n')
    ours_last = registries_after('import basicsr, losses_plugin\n')
    assert ours_first == ours_last
    # BasicSR's own entries are untouched; everything added is ours and lives in our package.
    assert {k: v for k, v in ours_first.items() if k in basicsr_only} == basicsr_only
    added = {k: v for k, v in ours_first.items() if k not in basicsr_only}
    assert all(module.startswith('losses_plugin.') for module in added.values())
    for (registry, name), module in added.items():
        suffix = REGISTERED_MODULES['.'.join(module.split('.')[:2])]
        assert module.endswith(suffix), f'{name} is registered from {module}, not a *{suffix}.py file'


def test_plain_import_basicsr_works_through_start_up_hook():
    """The .pth hook lets BasicSR import on current torchvision without importing us first."""
    out = subprocess.run([sys.executable, '-c', 'import basicsr, sys; print("losses_plugin" in sys.modules)'],
                         check=True, capture_output=True, text=True).stdout
    assert out.strip() == 'False'


def test_hook_answers_only_for_the_removed_module():
    finder = losses_plugin_shim.FunctionalTensorFinder()
    assert finder.find_spec('torchvision.transforms.functional') is None
    spec = finder.find_spec(losses_plugin_shim.FUNCTIONAL_TENSOR)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    from torchvision.transforms.functional import rgb_to_grayscale
    assert module.rgb_to_grayscale is rgb_to_grayscale


def test_safe_loader_keeps_order_and_refuses_tags():
    loaded = yaml.load('b: 1\na: {d: 2, c: 3}\n', Loader=SafeOrderedLoader)
    assert isinstance(loaded, collections.OrderedDict) and list(loaded) == ['b', 'a'] and list(loaded['a']) == ['d', 'c']
    try:
        yaml.load('x: !!python/name:os.system\n', Loader=SafeOrderedLoader)
    except yaml.constructor.ConstructorError:
        pass
    else:
        raise AssertionError('python tag accepted')
    # the global SafeLoader is not changed
    assert type(yaml.safe_load('a: 1')) is dict


def test_training_state_loads_on_cpu(tmp_path):
    net = torch.nn.Linear(2, 2)
    optimizer = torch.optim.Adam(net.parameters())
    net(torch.ones(1, 2)).sum().backward()
    optimizer.step()
    scheduler = MultiStepRestartLR(optimizer, milestones=[3, 5])
    path = tmp_path / '7.state'
    torch.save({'epoch': 1, 'iter': 7, 'optimizers': [optimizer.state_dict()],
                'schedulers': [scheduler.state_dict()]}, path)
    state = load_training_state(str(path), {'num_gpu': 0})
    assert state['iter'] == 7
    assert state['schedulers'][0]['milestones'] == collections.Counter([3, 5])
    assert state['optimizers'][0]['state'][0]['exp_avg'].device.type == 'cpu'


def test_auto_resume_picks_the_latest_state(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    states = tmp_path / 'experiments' / 'run' / 'training_states'
    states.mkdir(parents=True)
    for iteration in (5, 40, 9):  # states written before checkpoint sets (no file list): complete when they load
        torch.save({'epoch': 0, 'iter': iteration}, states / f'{iteration}.state')
    (states / '100_rng.pth').write_bytes(b'')  # no 100.state: an unfinished set, stepped over
    opt = {'auto_resume': True, 'name': 'run', 'path': {}}
    assert find_resume_state_path(opt) == 'experiments/run/training_states/40.state'
    assert opt['path']['resume_state'] == 'experiments/run/training_states/40.state'


def test_folder_listings_are_sorted(tmp_path):
    from basicsr.data import data_util, paired_image_dataset
    for folder in ('gt', 'lq'):
        (tmp_path / folder).mkdir()
        for name in ('b.png', 'c.png', 'a.png'):
            (tmp_path / folder / name).write_bytes(b'')
    pairs = paired_image_dataset.paired_paths_from_folder([str(tmp_path / 'lq'), str(tmp_path / 'gt')], ['lq', 'gt'],
                                                          '{}')
    assert [p['gt_path'][-5:] for p in pairs] == ['a.png', 'b.png', 'c.png']
    assert [p['lq_path'][-5:] for p in pairs] == ['a.png', 'b.png', 'c.png']
    assert [p[-5:] for p in data_util.paths_from_folder(str(tmp_path / 'gt'))] == ['a.png', 'b.png', 'c.png']
