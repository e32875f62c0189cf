"""Each patch of :mod:`losses_plugin.compat` applied again, in this process, to stand-ins of what it replaces:
what it installs, what it keeps of BasicSR's, and its CPU process-group functions with the process group and
SLURM's ``scontrol`` recorded instead of started. (``import losses_plugin`` applied them once already; these tests
see a changed patch, which a test of the patched behaviour alone cannot when the patch ran before the change.)"""
import sys
import types
from types import SimpleNamespace

import pytest
import torch
import yaml

from losses_plugin import compat, distributed
from losses_plugin.yaml_loader import SafeOrderedLoader


def test_safe_yaml_keeps_basicsrs_dumper_and_swaps_its_loader(monkeypatch):
    from basicsr.utils import options

    monkeypatch.setattr(options, 'ordered_yaml', lambda: (yaml.UnsafeLoader, 'the dumper'))
    compat.patch_safe_yaml()
    assert options.ordered_yaml() == (SafeOrderedLoader, 'the dumper')


def test_cpu_resume_replaces_basicsrs_load_resume_state(monkeypatch):
    import basicsr.train

    from losses_plugin import resume

    monkeypatch.setattr(basicsr.train, 'load_resume_state', None)
    compat.patch_cpu_resume()
    assert basicsr.train.load_resume_state is resume.load_resume_state


def test_sorted_folders_replaces_every_reference_in_basicsrs_data_modules(monkeypatch):
    from basicsr.data import data_util

    calls = []

    def pairs(folders, keys, filename_tmpl):
        calls.append((folders, keys, filename_tmpl))
        return [{'lq_path': '1', 'gt_path': 'b'}, {'lq_path': '2', 'gt_path': 'a'}]  # lq and gt orders differ

    def paths(folder):
        calls.append(folder)
        return ['c', 'a', 'b']

    monkeypatch.setattr(data_util, 'paired_paths_from_folder', pairs)
    monkeypatch.setattr(data_util, 'paths_from_folder', paths)
    dataset = types.ModuleType('basicsr.data.user_dataset')
    dataset.paired_paths_from_folder, dataset.paths_from_folder, dataset.other = pairs, paths, paths
    unrelated = types.ModuleType('user_module')
    unrelated.paths_from_folder = paths
    monkeypatch.setitem(sys.modules, dataset.__name__, dataset)
    monkeypatch.setitem(sys.modules, unrelated.__name__, unrelated)
    compat.patch_sorted_folders()
    for module in (data_util, dataset):
        assert module.paths_from_folder('folder') == ['a', 'b', 'c']
        # sorted by the second key's path (gt): the GT file names are the ones the LMDB keys come from
        assert module.paired_paths_from_folder(['lq', 'gt'], ['lq', 'gt'], '{}') == [
            {'lq_path': '2', 'gt_path': 'a'}, {'lq_path': '1', 'gt_path': 'b'}]
    assert dataset.other is paths and unrelated.paths_from_folder is paths
    assert calls == ['folder', (['lq', 'gt'], ['lq', 'gt'], '{}')] * 2  # BasicSR's listing, of what was asked


@pytest.fixture
def recorded_initialisation(monkeypatch):
    """BasicSR's CUDA process-group functions and ours for the CPU replaced by recorders, then patched again."""
    from basicsr.models.base_model import BaseModel
    from basicsr.utils import dist_util

    calls = []
    for name in ('_init_dist_pytorch', '_init_dist_slurm'):
        monkeypatch.setattr(dist_util, name, lambda backend, _n=name, **kw: calls.append(('cuda' + _n, backend, kw)))
        monkeypatch.setattr(compat, name + '_cpu', lambda backend, _n=name, **kw: calls.append(('cpu' + _n, backend, kw)))
    monkeypatch.setattr(BaseModel, 'model_to_device', lambda self, net: ('basicsr', self, net))
    monkeypatch.setattr(compat, '_model_to_cpu_ddp', lambda model, net: ('cpu ddp', model, net))
    monkeypatch.setattr(distributed, 'trains_on_cpu', lambda argv: calls.append(('argv', argv)) or True)
    monkeypatch.setattr(distributed.settings, 'cpu_backend', None)
    compat.patch_cpu_distributed()
    return calls


@pytest.mark.parametrize('cuda, cpu_backend, expected', [
    (True, False, 'cuda'), (True, True, 'cpu'), (False, False, 'cpu'), (False, True, 'cpu')])
def test_the_process_group_is_cudas_unless_the_run_trains_on_the_cpu(monkeypatch, recorded_initialisation, cuda,
                                                                     cpu_backend, expected):
    from basicsr.utils import dist_util

    monkeypatch.setattr(torch.cuda, 'is_available', lambda: cuda)
    monkeypatch.setattr(distributed.settings, 'cpu_backend', cpu_backend)
    dist_util._init_dist_pytorch('nccl', port=1)
    dist_util._init_dist_slurm('nccl', port=2)
    assert recorded_initialisation == [(expected + '_init_dist_pytorch', 'nccl', {'port': 1}),
                                       (expected + '_init_dist_slurm', 'nccl', {'port': 2})]


def test_undecided_the_command_line_decides(monkeypatch, recorded_initialisation):
    """BasicSR's own parse_options opens the process group before anything read ``num_gpu``."""
    from basicsr.utils import dist_util

    monkeypatch.setattr(torch.cuda, 'is_available', lambda: True)
    monkeypatch.setattr(sys, 'argv', ['train.py', '-opt', 'x.yml', '--launcher', 'pytorch'])
    dist_util._init_dist_pytorch('nccl')
    assert recorded_initialisation == [('argv', ['-opt', 'x.yml', '--launcher', 'pytorch']),
                                       ('cpu_init_dist_pytorch', 'nccl', {})]


@pytest.mark.parametrize('dist, device, expected', [(True, 'cpu', 'cpu ddp'), (False, 'cpu', 'basicsr'),
                                                    (True, 'meta', 'basicsr')])
def test_only_distributed_cpu_training_wraps_in_cpu_ddp(recorded_initialisation, dist, device, expected):
    from basicsr.models.base_model import BaseModel

    net = torch.nn.Linear(1, 1)
    model = SimpleNamespace(opt={'dist': dist}, device=torch.device(device))
    assert BaseModel.model_to_device(model, net) == (expected, model, net)


def test_cpu_ddp_takes_find_unused_parameters_from_the_options(monkeypatch):
    import torch.nn.parallel

    monkeypatch.setattr(torch.nn.parallel, 'DistributedDataParallel', lambda net, **kw: (net, kw))
    net = torch.nn.Linear(1, 1)
    model = SimpleNamespace(opt={'find_unused_parameters': True}, device=torch.device('cpu'))
    assert compat._model_to_cpu_ddp(model, net) == (net, {'find_unused_parameters': True})
    model.opt = {}
    assert compat._model_to_cpu_ddp(model, net) == (net, {'find_unused_parameters': False})


def test_torchrun_on_the_cpu_opens_a_gloo_group(monkeypatch):
    groups = []
    monkeypatch.setattr(torch.distributed, 'init_process_group', lambda **kw: groups.append(kw))
    compat._init_dist_pytorch_cpu('nccl', timeout=5)
    assert groups == [{'backend': 'gloo', 'timeout': 5}]


def test_slurm_on_the_cpu_maps_its_environment_and_opens_a_gloo_group(monkeypatch):
    groups, commands = [], []
    monkeypatch.setattr(torch.distributed, 'init_process_group', lambda **kw: groups.append(kw))
    monkeypatch.setattr(compat.subprocess, 'getoutput', lambda command: commands.append(command) or 'node7')
    for name in ('MASTER_ADDR', 'MASTER_PORT', 'WORLD_SIZE', 'RANK', 'LOCAL_RANK', 'SLURM_LOCALID'):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv('SLURM_NODELIST', 'node[7-8]')
    monkeypatch.setenv('SLURM_NTASKS', '4')
    monkeypatch.setenv('SLURM_PROCID', '3')
    compat._init_dist_slurm_cpu('nccl')
    environment = {k: compat.os.environ.get(k) for k in ('MASTER_ADDR', 'MASTER_PORT', 'WORLD_SIZE', 'RANK',
                                                         'LOCAL_RANK')}
    assert environment == {'MASTER_ADDR': 'node7', 'MASTER_PORT': '29500', 'WORLD_SIZE': '4', 'RANK': '3',
                           'LOCAL_RANK': '0'}
    assert commands == ['scontrol show hostname node[7-8] | head -n1'] and groups == [{'backend': 'gloo'}]
    monkeypatch.setenv('MASTER_PORT', '777')
    monkeypatch.setenv('SLURM_LOCALID', '1')
    compat._init_dist_slurm_cpu('nccl')
    assert compat.os.environ['MASTER_PORT'] == '777' and compat.os.environ['LOCAL_RANK'] == '1'
    compat._init_dist_slurm_cpu('nccl', port=1234)
    assert compat.os.environ['MASTER_PORT'] == '1234'


def test_dist_validation_is_the_sharded_one(monkeypatch):
    from basicsr.models.sr_model import SRModel

    from losses_plugin.models.sharded_validation import sharded_dist_validation

    monkeypatch.setattr(SRModel, 'dist_validation', None)
    compat.patch_dist_validation()
    assert SRModel.dist_validation is sharded_dist_validation


GUARDED = {('SRModel', 'init_training_settings'): '_guarded_init_training_settings',
           ('SRModel', 'feed_data'): '_guarded_feed_data',
           ('SRModel', 'optimize_parameters'): '_guarded_optimize_parameters',
           ('BaseModel', 'get_bare_model'): '_bare_model',
           ('BaseModel', 'update_learning_rate'): '_guarded_update_learning_rate',
           ('BaseModel', 'save_network'): '_save_network_in_set',
           ('BaseModel', 'save_training_state'): '_save_training_state_completing_the_set',
           ('BaseModel', 'resume_training'): '_resume_training_with_the_step_guard',
           ('BaseModel', 'model_to_device'): '_guarded_model_to_device'}
KEPT = ('init_training_settings', 'optimize_parameters', 'feed_data', 'get_bare_model', 'update_learning_rate',
        'resume_training', 'model_to_device')  # BasicSR's methods the guarded ones call


def test_guarded_steps_install_each_method_and_keep_basicsrs_for_them_to_call(monkeypatch):
    from basicsr.models.base_model import BaseModel
    from basicsr.models.sr_model import SRModel

    classes = {'SRModel': SRModel, 'BaseModel': BaseModel}
    originals = {}
    for (cls, method), _ in GUARDED.items():
        originals[method] = lambda *a, _m=method: _m
        monkeypatch.setattr(classes[cls], method, originals[method])
    monkeypatch.setattr(compat, '_basicsr', {})
    compat.patch_guarded_steps()
    master_only = ('save_network', 'save_training_state')  # only rank 0 writes checkpoint files
    for (cls, method), ours in GUARDED.items():
        installed = classes[cls].__dict__[method]
        assert (installed.__wrapped__ if method in master_only else installed) is getattr(compat, ours), method
        assert (installed is getattr(compat, ours)) is (method not in master_only), method
    assert compat._basicsr == {name: originals[name] for name in KEPT}


def test_apply_applies_each_patch_once_in_order(monkeypatch):
    calls = []
    names = ('patch_torchvision', 'patch_safe_yaml', 'patch_cpu_resume', 'patch_sorted_folders',
             'patch_cpu_distributed', 'patch_dist_validation', 'patch_guarded_steps')
    for name in names:
        monkeypatch.setattr(compat, name, lambda _n=name: calls.append(_n))
    monkeypatch.setattr(compat, '_applied', False)
    compat.apply()
    compat.apply()
    assert calls == list(names) and compat._applied is True


def test_a_model_without_a_step_guard_resumes_as_basicsr_does(monkeypatch):
    """BasicSR's GAN models take no step guard; a state that holds one (saved by another model) is theirs too."""
    resumed = []
    monkeypatch.setitem(compat._basicsr, 'resume_training', lambda model, state: resumed.append(state))
    model = SimpleNamespace()
    state = {'iter': 4, 'step_guard': {'skips_in_a_row': {}}}
    compat._resume_training_with_the_step_guard(model, state)
    assert resumed == [state]
    loaded = []
    model.step_guard = SimpleNamespace(load_state_dict=loaded.append)
    compat._resume_training_with_the_step_guard(model, state)
    assert loaded == [state['step_guard']]
    compat._resume_training_with_the_step_guard(model, {'iter': 4})  # saved without one
    assert loaded == [state['step_guard']]
