"""FGDModel through the real CLI: trains, logs each term and its maps, resumes exactly, runs under torchrun."""
import re
from pathlib import Path

import pytest
import torch
from conftest import PYTHON, free_port, load_params, run_cli, tiny_options, training_log, write_options
from tensorboard.backend.event_processing.event_accumulator import IMAGES, EventAccumulator

pytestmark = pytest.mark.slow


def fgd_options(demo_data, name, total_iter, area_sizes=(3, 5, 7)):
    opt = tiny_options(demo_data, name, total_iter=total_iter)
    opt['model_type'] = 'FGDModel'
    opt['network_g'] = {'type': 'FGDNet', 'backbone': opt['network_g'], 'area_sizes': list(area_sizes),
                        'class_module': {'num_feat': 8}}
    opt['train']['pixel_opt'] = {'type': 'FineGrainedDynamicLoss', 'alpha': 0.1, 'beta': 0.1, 'average_weight': 0.1}
    opt['datasets']['train']['num_worker_per_gpu'] = 1
    opt['logger']['save_checkpoint_freq'] = 4
    return opt


def test_fgd_trains_logs_its_terms_and_maps_and_resumes_exactly(demo_data, tmp_path):
    straight = fgd_options(demo_data, 'straight', 8)
    straight['val']['val_freq'] = 8
    straight['logger'].update(use_tb_logger=True, log_weight_maps=True)
    run_cli(['train', '-opt', write_options(straight, tmp_path / 'straight.yml')], cwd=tmp_path)
    run_cli(['train', '-opt', write_options(fgd_options(demo_data, 'resumed', 5), tmp_path / 'resumed.yml')],
            cwd=tmp_path)
    run_cli(['train', '-opt', write_options(fgd_options(demo_data, 'resumed', 8), tmp_path / 'resumed.yml'),
             '--auto_resume'], cwd=tmp_path)
    models = tmp_path / 'experiments'
    log = training_log(models / 'straight')
    assert re.search(r'iter:\s+8,.*l_total: .* l_r: .* l_c1: .* l_c2: .* l_avg: ', log)
    assert '# psnr:' in log  # validation runs the inference path through SRModel's test()
    a = load_params(models / 'straight' / 'models' / 'net_g_latest.pth')
    b = load_params(models / 'resumed' / 'models' / 'net_g_latest.pth')
    assert any(k.startswith('class_module') for k in a) and any(k.startswith('bin_head') for k in a)
    assert all(torch.equal(a[k], b[k]) for k in a), 'FGDNet differs after resume'
    events = EventAccumulator(str(tmp_path / 'tb_logger' / 'straight'), size_guidance={IMAGES: 0}).Reload()
    assert {'weight_maps/fgd_bins', 'weight_maps/fgd_areas', 'weight_maps/fgd_error'} <= set(events.Tags()['images'])


def test_fgd_static_area_under_torchrun_keeps_ranks_identical(demo_data, tmp_path):
    opt = fgd_options(demo_data, 'ddp', 3, area_sizes=[5])
    torchrun = [str(Path(PYTHON).parent / 'torchrun'), '--nproc_per_node=2', f'--master_port={free_port()}']
    run_cli(['train', '-opt', write_options(opt, tmp_path / 'ddp.yml'), '--launcher', 'pytorch'], cwd=tmp_path,
            launcher=torchrun)
    log = training_log(tmp_path / 'experiments' / 'ddp')
    assert 'World size: 2' in log and 'net_g parameters identical on all 2 ranks' in log
    assert 'l_c2' not in log  # no Class-Module in the static variant
