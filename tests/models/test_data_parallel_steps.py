"""A training step under DataParallel (BasicSR wraps net_g, and TLW's net_w, for ``num_gpu`` > 1 without a
launcher) is the plain model's step; and under ``train.amp`` every replica computes in the configured dtype.

DataParallel is recreated on the CPU (``data_parallel_simulation``: torch's own DataParallel.forward, scatter,
replicate and gather; two replicas, each in its own thread on half the batch), and BasicSR's ``model_to_device``
hands it every network it would wrap. The models take their real ``optimize_parameters`` step in float64 with
plain gradient descent, so DataParallel's chunked batch changes only summation orders: the logged losses and the
updated weights equal the plain model's to ~1e-12. TLW's weighting network has BatchNorm, which DataParallel
normalises per replica (it is not SyncBatchNorm): its batch is two copies of the same two pairs, whose chunks
have the whole batch's statistics.
"""
import threading

import pytest
import torch
from basicsr.models.base_model import BaseModel
from data_parallel_simulation import SimulatedDataParallel
from test_model_steps import float64  # noqa: F401 (a fixture)
from test_model_steps import build, fixed_batch, step_options, tiny_edsr
from test_stage_supervised_model import blurred_batch
from test_stage_supervised_model import options as stage_supervised_options
from test_tlw_model import tlw_step_options
from test_udl_model import stage_one_checkpoint, udl_options


@pytest.fixture
def data_parallel(monkeypatch):
    """BasicSR's ``model_to_device`` wraps every network it is given in a simulated two-GPU DataParallel."""
    monkeypatch.setattr(BaseModel, 'model_to_device', lambda self, net: SimulatedDataParallel(net.to(self.device)))


def fgd_options(tmp_path):
    network_g = {'type': 'FGDNet', 'backbone': tiny_edsr(), 'class_module': {'num_feat': 8, 'pool': 1}}
    return step_options(tmp_path, 'FGDModel', network_g, {'type': 'FineGrainedDynamicLoss', 'average_weight': 0.1},
                        1e-2)


def model_options(tmp_path, case):
    if case == 'FGDModel':
        return fgd_options(tmp_path)
    if case == 'TLWModel':
        return tlw_step_options(tmp_path)
    if case == 'UDLModel-esu':
        return udl_options(tmp_path, 'esu')
    if case == 'UDLModel-udl':
        return udl_options(tmp_path, 'udl', stage_one_checkpoint(tmp_path)[1])
    if case == 'StageSupervisedModel':
        return stage_supervised_options(tmp_path)
    return step_options(tmp_path, 'SRModel', tiny_edsr(), {'type': 'SPLoss'}, 1e-2)


def batch(case):
    data = blurred_batch() if case == 'StageSupervisedModel' else fixed_batch()
    if case == 'TLWModel':
        data = {key: torch.cat([value, value]) for key, value in data.items()}
    return data


def networks(model):
    """The trained networks, unwrapped."""
    names = ['net_g', 'net_w'] if hasattr(model, 'net_w') else ['net_g']
    return {name: model.get_bare_model(getattr(model, name)) for name in names}


def weights(model):
    return {f'{name}.{key}': p.detach().clone() for name, net in networks(model).items()
            for key, p in net.named_parameters()}


def one_step(opt, case):
    """(model, logged values, parameters before, parameters after) of one step on the case's batch."""
    model = build(opt)
    before = weights(model)
    model.feed_data(batch(case))
    torch.manual_seed(7)  # TLW's relaxed-Bernoulli samples, drawn from the gathered means in the main thread
    model.optimize_parameters(2)
    return model, {key: float(value) for key, value in model.log_dict.items()}, before, weights(model)


CASES = ['SRModel', 'FGDModel', 'UDLModel-esu', 'UDLModel-udl', 'TLWModel', 'StageSupervisedModel']


@pytest.mark.usefixtures('float64')
@pytest.mark.parametrize('case', CASES)
def test_a_data_parallel_step_is_the_plain_models_step(tmp_path, case, monkeypatch):
    opt = model_options(tmp_path, case)
    _, plain_logged, before, plain_after = one_step(opt, case)
    with monkeypatch.context() as patch:
        patch.setattr(BaseModel, 'model_to_device', lambda self, net: SimulatedDataParallel(net.to(self.device)))
        model, logged, _, after = one_step(opt, case)
    wrapped = [getattr(model, name) for name in networks(model)] + ([model.estimator] if case == 'UDLModel-udl' else [])
    assert all(isinstance(net, SimulatedDataParallel) and len(net.replica_threads) == 2 for net in wrapped)
    assert logged == pytest.approx(plain_logged, rel=1e-9, abs=1e-12)
    assert any(not torch.equal(before[key], value) for key, value in after.items())  # the step moved weights
    for key, value in after.items():
        torch.testing.assert_close(value, plain_after[key], rtol=1e-9, atol=1e-12, msg=key)


def activation_dtypes(net):
    """Records (thread, dtype) of the output of the first convolution of ``net`` at each call."""
    seen = []
    conv = next(m for m in net.modules() if isinstance(m, torch.nn.Conv2d))
    conv.register_forward_hook(lambda module, args, output: seen.append((threading.current_thread(), output.dtype)))
    return seen


@pytest.mark.usefixtures('data_parallel')
def test_every_replica_computes_in_the_amp_dtype_not_its_threads_default(tmp_path):
    """The CUDA case (bfloat16 configured, float16 a new thread's default) mirrored on a CPU, whose new threads
    default to bfloat16: float16 configured, every replica of net_g and net_w computes in float16."""
    opt = tlw_step_options(tmp_path)
    opt['train']['amp'] = {'dtype': 'float16'}
    model = build(opt)
    assert torch.get_autocast_dtype('cpu') == torch.bfloat16  # what a replica's thread starts with
    seen = {name: activation_dtypes(net) for name, net in networks(model).items()}
    model.feed_data(batch('TLWModel'))
    model.optimize_parameters(2)
    for name, calls in seen.items():
        threads = {thread for thread, _ in calls}  # each replica in a thread of its own
        assert len(threads) == len(calls) and threading.current_thread() not in threads, name
        assert {dtype for _, dtype in calls} == {torch.float16}, name
    assert len(seen['net_g']) == 2 and len(seen['net_w']) == 4  # net_w: the E step's forward and the M step's
