"""`basicsr train|test` and `python -m losses_plugin` on CPU: real processes, real files."""
import subprocess
from pathlib import Path

import pytest
import torch
from conftest import PYTHON, REPO, load_params, run_cli, tiny_options, training_log, write_options

pytestmark = pytest.mark.slow


def test_train_validate_then_test_on_cpu(demo_data, tmp_path):
    opt = tiny_options(demo_data, 'cli_train', total_iter=4)
    opt['val']['val_freq'] = 2
    opt['logger']['use_tb_logger'] = True
    # --local-rank is what the older torch.distributed.launch passes
    run_cli(['train', '-opt', write_options(opt, tmp_path / 'train.yml'), '--local-rank=0'], cwd=tmp_path)

    experiment = tmp_path / 'experiments' / 'cli_train'
    assert (experiment / 'models' / 'net_g_latest.pth').is_file()
    assert (experiment / 'train.yml').is_file()  # BasicSR's copy of the options
    assert list((tmp_path / 'tb_logger' / 'cli_train').glob('events.out.tfevents.*'))
    log = training_log(experiment)
    assert 'iter:       4' in log and log.count('Validation DemoVal') == 3  # iterations 2, 4 and the end

    test_opt = {
        'name': 'cli_test', 'model_type': 'SRModel', 'scale': 4, 'num_gpu': 0,
        'datasets': {'test_1': {'name': 'DemoVal', 'type': 'PairedImageDataset', 'io_backend': {'type': 'disk'},
                                **{k: opt['datasets']['val'][k] for k in ('dataroot_gt', 'dataroot_lq')}}},
        'network_g': opt['network_g'],
        'path': {'pretrain_network_g': str(experiment / 'models' / 'net_g_latest.pth'), 'strict_load_g': True},
        'val': {'save_img': True, 'suffix': None, 'metrics': {'psnr': {'type': 'calculate_psnr', 'crop_border': 4,
                                                      'test_y_channel': True}}},
    }
    run_cli(['test', '-opt', write_options(test_opt, tmp_path / 'test.yml')], cwd=tmp_path)

    # the demo's last step scores the trained model against bicubic and draws a panel
    report = subprocess.run([PYTHON, str(REPO / 'scripts' / 'evaluate_sr.py'), '-opt', str(tmp_path / 'train.yml')],
                            cwd=tmp_path, capture_output=True, text=True, check=True).stdout
    rows = [line.split() for line in report.splitlines() if line.startswith(('chelsea', 'coffee', 'mean'))]
    assert [r[0] for r in rows] == ['chelsea.png', 'coffee.png', 'mean'] and all(len(r) == 5 for r in rows)
    assert 20 < float(rows[0][1]) < 40  # bicubic PSNR of chelsea, x4
    assert (tmp_path / 'results' / 'cli_train' / 'bicubic_output_gt.png').is_file()
    # and the loss panel from option file + trained weights (L1Loss has no map to show: SPLoss's)
    opt['train']['pixel_opt'] = {'type': 'SPLoss', 'alpha': 2.0}
    panel_opt = write_options(opt, tmp_path / 'panel.yml')
    subprocess.run([PYTHON, str(REPO / 'scripts' / 'loss_panel.py'), '-opt', str(panel_opt), '--index', '1',
                    '--out', str(tmp_path / 'panel.png')], cwd=tmp_path, capture_output=True, check=True)
    assert (tmp_path / 'panel.png').is_file()
    results = tmp_path / 'results' / 'cli_test'
    assert sorted(p.name for p in (results / 'visualization' / 'DemoVal').iterdir()) == [
        'chelsea_cli_test.png', 'coffee_cli_test.png']
    assert '# psnr:' in ''.join(p.read_text() for p in results.glob('test_*.log'))


def test_console_script_is_installed(tmp_path):
    basicsr = Path(PYTHON).parent / 'basicsr'
    result = subprocess.run([str(basicsr), 'train', '-opt', 'missing.yml'], cwd=tmp_path, capture_output=True,
                            text=True)
    assert result.returncode == 2
    assert "basicsr train: error: option file 'missing.yml' does not exist" in result.stderr


def test_force_yml_manual_seed_is_the_runs_seed(demo_data, tmp_path):
    """`--force_yml manual_seed=5` trains exactly as an option file with `manual_seed: 5` (initial weights too:
    BasicSR seeds before it applies --force_yml)."""
    opt = tiny_options(demo_data, 'seed_file', total_iter=1)
    opt['manual_seed'] = 5
    run_cli(['train', '-opt', write_options(opt, tmp_path / 'file.yml')], cwd=tmp_path)
    forced = dict(opt, name='seed_forced', manual_seed=0)
    run_cli(['train', '-opt', write_options(forced, tmp_path / 'forced.yml'), '--force_yml', 'manual_seed=5'],
            cwd=tmp_path)
    other = dict(opt, name='seed_other', manual_seed=0)
    run_cli(['train', '-opt', write_options(other, tmp_path / 'other.yml')], cwd=tmp_path)
    weights = {name: load_params(tmp_path / 'experiments' / name / 'models' / 'net_g_latest.pth')
               for name in ('seed_file', 'seed_forced', 'seed_other')}
    assert all(torch.equal(weights['seed_file'][k], weights['seed_forced'][k]) for k in weights['seed_file'])
    assert not all(torch.equal(weights['seed_file'][k], weights['seed_other'][k]) for k in weights['seed_file'])
