"""Patches that make BasicSR 1.4.2 run on today's stack, applied on ``import losses_plugin``.

Each patch is a named function, applied once by :func:`apply`. None changes what happens on a
machine where BasicSR already worked (CUDA available, older torchvision):

- :func:`patch_torchvision`: BasicSR imports the removed ``torchvision.transforms.functional_tensor``.
- :func:`patch_safe_yaml`: BasicSR reads option files with PyYAML's full loader, which executes
  ``!!python/...`` tags; options are read with a safe loader that keeps key order instead.
- :func:`patch_cpu_resume`: ``load_resume_state`` maps the state to ``torch.cuda.current_device()``,
  which crashes without a GPU.
- :func:`patch_sorted_folders`: BasicSR lists image folders in ``os.scandir`` order, which depends
  on the file system, so sample i differs between machines and between a folder and the LMDB made
  from it (whose keys are sorted); folder listings are sorted instead.
- :func:`patch_cpu_distributed`: ``--launcher pytorch|slurm`` calls ``torch.cuda.set_device`` and
  NCCL, and DDP is given CUDA ``device_ids``; without a GPU we use gloo and plain CPU DDP.
"""
import collections
import os
import subprocess
import sys

import yaml

import losses_plugin_shim

_applied = False


def patch_torchvision():
    losses_plugin_shim.install()


class SafeOrderedLoader(getattr(yaml, 'CSafeLoader', yaml.SafeLoader)):
    """PyYAML's safe loader (no Python object tags) that builds ``OrderedDict`` mappings."""


def _construct_ordered_mapping(loader, node):
    loader.flatten_mapping(node)
    return collections.OrderedDict(loader.construct_pairs(node))


SafeOrderedLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_ordered_mapping)


def patch_safe_yaml():
    from basicsr.utils import options

    unsafe_ordered_yaml = options.ordered_yaml

    def ordered_yaml():
        _, dumper = unsafe_ordered_yaml()
        return SafeOrderedLoader, dumper

    options.ordered_yaml = ordered_yaml


def load_training_state(path, opt):
    """Loads a ``*.state`` file onto the device the run trains on (CPU when ``num_gpu`` is 0).

    The scheduler states hold ``collections.Counter`` milestones, the one non-tensor type that
    ``torch.load(weights_only=True)`` must be told about.
    """
    import torch

    if opt.get('num_gpu', 0) != 0 and torch.cuda.is_available():
        device = torch.device('cuda', torch.cuda.current_device())
    else:
        device = torch.device('cpu')
    with torch.serialization.safe_globals([collections.Counter]):
        return torch.load(path, map_location=device, weights_only=True)


def find_resume_state_path(opt):
    """The state to resume from: ``path.resume_state``, or the latest one with ``--auto_resume``.

    Like BasicSR, ``--auto_resume`` looks in ``experiments/<name>/training_states`` under the
    current working directory.
    """
    if not opt['auto_resume']:
        return opt['path'].get('resume_state')
    state_dir = os.path.join('experiments', opt['name'], 'training_states')
    if not os.path.isdir(state_dir):
        return None
    iters = [int(f[:-len('.state')]) for f in os.listdir(state_dir) if f.endswith('.state') and f[:-6].isdigit()]
    if not iters:
        return None
    path = os.path.join(state_dir, f'{max(iters)}.state')
    opt['path']['resume_state'] = path
    return path


def load_resume_state(opt):
    """Device-aware replacement of ``basicsr.train.load_resume_state``."""
    from basicsr.utils import check_resume

    path = find_resume_state_path(opt)
    if path is None:
        return None
    state = load_training_state(path, opt)
    check_resume(opt, state['iter'])
    return state


def patch_cpu_resume():
    import basicsr.train

    basicsr.train.load_resume_state = load_resume_state


def patch_sorted_folders():
    from basicsr.data import data_util

    scandir_order = {'paired_paths_from_folder': data_util.paired_paths_from_folder,
                     'paths_from_folder': data_util.paths_from_folder}

    def paired_paths_from_folder(folders, keys, filename_tmpl):
        pairs = scandir_order['paired_paths_from_folder'](folders, keys, filename_tmpl)
        return sorted(pairs, key=lambda pair: pair[f'{keys[1]}_path'])

    def paths_from_folder(folder):
        return sorted(scandir_order['paths_from_folder'](folder))

    sorted_versions = {'paired_paths_from_folder': paired_paths_from_folder, 'paths_from_folder': paths_from_folder}
    # BasicSR's datasets import these functions by name, so replace every reference.
    for module_name, module in list(sys.modules.items()):
        if module_name.startswith('basicsr.data'):
            for name, original in scandir_order.items():
                if getattr(module, name, None) is original:
                    setattr(module, name, sorted_versions[name])


def _init_dist_pytorch_cpu(backend, **kwargs):
    import torch.distributed as dist

    dist.init_process_group(backend='gloo', **kwargs)


def _init_dist_slurm_cpu(backend, port=None):
    """SLURM's environment mapped to torch.distributed's, then gloo."""
    import torch.distributed as dist

    node_list = os.environ['SLURM_NODELIST']
    os.environ['MASTER_ADDR'] = subprocess.getoutput(f'scontrol show hostname {node_list} | head -n1')
    if port is not None:
        os.environ['MASTER_PORT'] = str(port)
    os.environ.setdefault('MASTER_PORT', '29500')
    os.environ['WORLD_SIZE'] = os.environ['SLURM_NTASKS']
    os.environ['RANK'] = os.environ['SLURM_PROCID']
    os.environ['LOCAL_RANK'] = os.environ.get('SLURM_LOCALID', '0')
    dist.init_process_group(backend='gloo')


def _model_to_cpu_ddp(model, net):
    from torch.nn.parallel import DistributedDataParallel

    net = net.to(model.device)
    return DistributedDataParallel(net, find_unused_parameters=model.opt.get('find_unused_parameters', False))


# Set to True (the CLI does, for ``num_gpu: 0``) to train distributed on CPU even where CUDA exists.
cpu_distributed = False


def patch_cpu_distributed():
    import torch
    from basicsr.models.base_model import BaseModel
    from basicsr.utils import dist_util

    cuda_init = {'_init_dist_pytorch': dist_util._init_dist_pytorch, '_init_dist_slurm': dist_util._init_dist_slurm}
    cpu_init = {'_init_dist_pytorch': _init_dist_pytorch_cpu, '_init_dist_slurm': _init_dist_slurm_cpu}

    def dispatch(name):

        def init(backend, **kwargs):
            chosen = cuda_init if torch.cuda.is_available() and not cpu_distributed else cpu_init
            return chosen[name](backend, **kwargs)

        return init

    for name in cuda_init:
        setattr(dist_util, name, dispatch(name))

    cuda_model_to_device = BaseModel.model_to_device

    def model_to_device(self, net):
        if self.opt['dist'] and self.device.type == 'cpu':
            return _model_to_cpu_ddp(self, net)
        return cuda_model_to_device(self, net)

    BaseModel.model_to_device = model_to_device


def apply():
    """Applies every patch once; :func:`patch_torchvision` must run before ``import basicsr``."""
    global _applied
    if _applied:
        return
    patch_torchvision()
    patch_safe_yaml()
    patch_cpu_resume()
    patch_sorted_folders()
    patch_cpu_distributed()
    _applied = True
