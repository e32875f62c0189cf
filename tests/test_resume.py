"""A resumed run continues exactly: N+M iterations in one run equal N, then M after --auto_resume."""
import pytest
import torch
from conftest import load_params, run_cli, tiny_options, training_log, write_options

pytestmark = pytest.mark.slow


def resume_options(demo_data, name, total_iter):
    # 12 samples / batch 2 = 6 iterations per epoch: the checkpoint at 4 is mid-epoch, and the resumed
    # part crosses an epoch boundary, a learning-rate milestone (6), validation (5) and EMA.
    opt = tiny_options(demo_data, name, total_iter=total_iter, ema_decay=0.9)
    opt['num_gpu'] = 'auto'
    opt['datasets']['train']['num_worker_per_gpu'] = 1
    opt['train']['scheduler']['milestones'] = [6]
    opt['val']['val_freq'] = 5
    opt['logger']['save_checkpoint_freq'] = 4
    return opt


def test_auto_resume_continues_bit_exactly(demo_data, tmp_path):
    straight = resume_options(demo_data, 'straight', total_iter=10)
    run_cli(['train', '-opt', write_options(straight, tmp_path / 'straight.yml')], cwd=tmp_path)

    interrupted = resume_options(demo_data, 'resumed', total_iter=7)  # stops after 7; last state at 4
    run_cli(['train', '-opt', write_options(interrupted, tmp_path / 'resumed.yml')], cwd=tmp_path)
    resumed = resume_options(demo_data, 'resumed', total_iter=10)
    run_cli(['train', '-opt', write_options(resumed, tmp_path / 'resumed.yml'), '--auto_resume'], cwd=tmp_path)

    models = tmp_path / 'experiments'
    assert 'Resuming training from iter: 4.' in training_log(models / 'resumed')
    for key in ('params', 'params_ema'):
        a = load_params(models / 'straight' / 'models' / 'net_g_latest.pth', key)
        b = load_params(models / 'resumed' / 'models' / 'net_g_latest.pth', key)
        at_4 = load_params(models / 'resumed' / 'models' / 'net_g_4.pth', key)
        assert a.keys() == b.keys()
        for name in a:
            assert torch.equal(a[name], b[name]), f'{key}.{name} differs after resume'
        assert any(not torch.equal(a[n], at_4[n]) for n in a), 'the resumed run did not train'
