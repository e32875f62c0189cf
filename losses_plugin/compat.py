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
  NCCL, and DDP is given CUDA ``device_ids``; without a GPU, or with ``num_gpu: 0`` (also under BasicSR's
  own ``train_pipeline``, which opens the process group before it reads ``num_gpu``), we use gloo and plain
  CPU DDP.
- :func:`patch_dist_validation`: ``SRModel.dist_validation`` validates on rank 0 alone through the
  DDP-wrapped network and hangs for networks with buffers; every rank validates a shard instead.
- :func:`patch_guarded_steps`: ``SRModel`` (and every model built on it) steps through
  :class:`losses_plugin.models.training_step.StepGuard` (``train.amp``, ``train.grad_clip``,
  ``train.non_finite``, ``train.channels_last``, ``train.compile``), whose state (GradScalers, skip
  counts) joins the training state; no model saves non-finite weights; ``train.channels_last`` lays a
  network out in ``model_to_device``, before DDP or DataParallel wraps it. Networks and training states are
  written as checkpoint sets (:mod:`losses_plugin.checkpoint_sets`: atomic files, the state last and
  listing the others), not by ``torch.save`` in place.
"""
import os
import subprocess
import sys

import losses_plugin_shim

_applied = False


def patch_torchvision():
    losses_plugin_shim.install()


def patch_safe_yaml():
    from basicsr.utils import options

    from losses_plugin.yaml_loader import SafeOrderedLoader

    unsafe_ordered_yaml = options.ordered_yaml

    def ordered_yaml():
        _, dumper = unsafe_ordered_yaml()
        return SafeOrderedLoader, dumper

    options.ordered_yaml = ordered_yaml


def patch_cpu_resume():
    import basicsr.train

    from losses_plugin.resume import load_resume_state

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


def patch_cpu_distributed():
    import torch
    from basicsr.models.base_model import BaseModel
    from basicsr.utils import dist_util

    from losses_plugin.distributed import settings, trains_on_cpu

    cuda_init = {'_init_dist_pytorch': dist_util._init_dist_pytorch, '_init_dist_slurm': dist_util._init_dist_slurm}
    cpu_init = {'_init_dist_pytorch': _init_dist_pytorch_cpu, '_init_dist_slurm': _init_dist_slurm_cpu}

    def dispatch(name):

        def init(backend, **kwargs):
            # our CLI decides from its checked options; BasicSR's own parse_options from its command line
            cpu = settings.cpu_backend if settings.cpu_backend is not None else trains_on_cpu(sys.argv[1:])
            chosen = cuda_init if torch.cuda.is_available() and not cpu else cpu_init
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


def patch_dist_validation():
    from basicsr.models.sr_model import SRModel

    from losses_plugin.models.sharded_validation import sharded_dist_validation

    SRModel.dist_validation = sharded_dist_validation


# BasicSR's methods that the guarded-step patch wraps, kept by :func:`patch_guarded_steps`
_basicsr = {}


def _guarded_model_to_device(self, net):
    """``train.channels_last`` before DDP or DataParallel wraps the network: DDP's gradient buckets take the
    layout the parameters have when it wraps them. Not for BasicSR's GAN models, which take no step guard."""
    from basicsr.models.srgan_model import SRGANModel

    from losses_plugin.models import training_step

    if not isinstance(self, SRGANModel) and training_step.channels_last_requested(self.opt):
        training_step.to_channels_last(net)
    return _basicsr['model_to_device'](self, net)


def _guarded_init_training_settings(self):
    from losses_plugin.models import training_step

    self.step_guard = training_step.StepGuard(self)  # reads and checks its options first
    _basicsr['init_training_settings'](self)
    self.step_guard.prepare_networks()


def _guarded_feed_data(self, data):
    _basicsr['feed_data'](self, data)
    if getattr(self, 'step_guard', None) is not None:
        for name in ('lq', 'gt'):
            if hasattr(self, name):
                setattr(self, name, self.step_guard.memory_format(getattr(self, name)))


def _bare_model(self, net):
    """BasicSR's unwrapping of DDP/DataParallel, and of torch.compile's wrapper."""
    net = _basicsr['get_bare_model'](self, getattr(net, '_orig_mod', net))  # compile(DDP(net)) -> net
    return getattr(net, '_orig_mod', net)


def _guarded_update_learning_rate(self, current_iter, warmup_iter=-1):
    if getattr(self, 'step_guard', None) is not None:
        self.step_guard.before_schedulers_step(current_iter)
    _basicsr['update_learning_rate'](self, current_iter, warmup_iter)


def _guarded_optimize_parameters(self, current_iter):
    from losses_plugin.models import training_step

    if getattr(self, 'step_guard', None) is None:
        # built before this patch: the start-up hook imported us while it built its loss (``pixel_opt:
        # {type: SPLoss}`` in BasicSR's own train.py), so it trains as BasicSR's SRModel does
        return _basicsr['optimize_parameters'](self, current_iter)
    training_step.sr_model_optimize_parameters(self, current_iter)


def _save_network_in_set(self, net, net_label, current_iter, param_key='params'):
    """BasicSR's network file, written atomically as part of the iteration's checkpoint set."""
    from losses_plugin import checkpoint_sets
    from losses_plugin.models import training_step

    nets = net if isinstance(net, list) else [net]
    for one in nets:
        training_step.check_finite_weights(one, net_label, current_iter)
    keys = param_key if isinstance(param_key, list) else [param_key]
    contents = {key: {name[len('module.'):] if name.startswith('module.') else name: tensor.cpu()
                      for name, tensor in self.get_bare_model(one).state_dict().items()}
                for one, key in zip(nets, keys)}
    name = f"{net_label}_{'latest' if current_iter == -1 else current_iter}.pth"
    checkpoint_sets.writer(self.opt).write(current_iter, contents, os.path.join(self.opt['path']['models'], name))


def _save_training_state_completing_the_set(self, epoch, current_iter):
    """BasicSR's training state (optimisers, schedulers) plus the step guard's, written last: it completes the
    iteration's checkpoint set (:mod:`losses_plugin.checkpoint_sets`)."""
    from losses_plugin import checkpoint_sets

    if current_iter == -1:
        return
    state = {'epoch': epoch, 'iter': current_iter, 'optimizers': [o.state_dict() for o in self.optimizers],
             'schedulers': [s.state_dict() for s in self.schedulers]}
    if getattr(self, 'step_guard', None) is not None:
        state['step_guard'] = self.step_guard.state_dict()
    checkpoint_sets.writer(self.opt).commit(
        current_iter, state, os.path.join(self.opt['path']['training_states'], f'{current_iter}.state'))


def _resume_training_with_the_step_guard(self, resume_state):
    _basicsr['resume_training'](self, resume_state)
    if getattr(self, 'step_guard', None) is not None and 'step_guard' in resume_state:
        self.step_guard.load_state_dict(resume_state['step_guard'])


def patch_guarded_steps():
    from basicsr.models.base_model import BaseModel
    from basicsr.models.sr_model import SRModel
    from basicsr.utils import dist_util

    _basicsr.update(init_training_settings=SRModel.init_training_settings,
                    optimize_parameters=SRModel.optimize_parameters, feed_data=SRModel.feed_data,
                    get_bare_model=BaseModel.get_bare_model, update_learning_rate=BaseModel.update_learning_rate,
                    resume_training=BaseModel.resume_training, model_to_device=BaseModel.model_to_device)
    # module-level functions (not closures), so that each call runs the current definition
    SRModel.init_training_settings = _guarded_init_training_settings
    SRModel.feed_data = _guarded_feed_data
    BaseModel.get_bare_model = _bare_model
    SRModel.optimize_parameters = _guarded_optimize_parameters
    BaseModel.update_learning_rate = _guarded_update_learning_rate
    BaseModel.save_network = dist_util.master_only(_save_network_in_set)
    BaseModel.save_training_state = dist_util.master_only(_save_training_state_completing_the_set)
    BaseModel.resume_training = _resume_training_with_the_step_guard
    BaseModel.model_to_device = _guarded_model_to_device


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
    patch_dist_validation()
    patch_guarded_steps()
    _applied = True
