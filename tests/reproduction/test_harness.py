"""The reproduction harness: collecting BasicSR's logged metrics, the report's tables and verdicts,
the full-scale refusal without data and its torchrun commands with data; on fixture runs written the way
BasicSR writes them."""
import subprocess

import pytest
import torch
from conftest import PYTHON, REPO
from torch.utils.tensorboard import SummaryWriter

from losses_plugin.options import read_option_file
from losses_plugin.reproduction.grids import GRIDS, PaperGrid, Run
from losses_plugin.reproduction.report import bar_charts, comparisons, markdown
from losses_plugin.reproduction.results import read_final_metrics, run_is_finished

GRID = PaperGrid('toy', 'Toy paper', 'Table 9, Set5', {'psnr': 'higher', 'niqe': 'lower'},
                 (Run('base', 'Baseline', paper={'psnr': 30.0, 'niqe': 7.0}),
                  Run('method', 'Method', 'base', {'psnr': 30.5, 'niqe': 6.5}),
                  Run('missing', 'Never ran', 'base')))


def fake_run(root, name, metrics, steps=(300, 600), weights=True):
    """tb_logger/<name> scalars as BasicSR's _log_validation_metric_values writes them."""
    writer = SummaryWriter(log_dir=str(root / 'tb_logger' / name))
    for step in steps:
        for metric, value in metrics.items():
            writer.add_scalar(f'metrics/DemoVal/{metric}', value - (steps[-1] - step) / 1000, step)
    writer.close()
    if weights:
        (root / 'experiments' / name / 'models').mkdir(parents=True)
        torch.save({'params': {}}, root / 'experiments' / name / 'models' / 'net_g_latest.pth')


def test_final_metrics_are_the_last_logged_validation(tmp_path):
    fake_run(tmp_path, 'demo_base', {'psnr': 29.0, 'niqe': 6.0})
    metrics = read_final_metrics(str(tmp_path / 'tb_logger' / 'demo_base'))
    assert metrics == {'DemoVal': {'psnr': (pytest.approx(29.0), 600), 'niqe': (pytest.approx(6.0), 600)}}
    assert read_final_metrics(str(tmp_path / 'tb_logger' / 'nothing')) == {}
    assert run_is_finished(str(tmp_path), 'demo_base', 600) and not run_is_finished(str(tmp_path), 'demo_base', 700)
    fake_run(tmp_path, 'no_weights', {'psnr': 1.0}, weights=False)
    assert not run_is_finished(str(tmp_path), 'no_weights', 600)


def test_report_tables_put_the_papers_numbers_beside_ours_with_verdicts(tmp_path):
    results = {'base': {'DemoVal': {'psnr': (29.0, 600), 'niqe': (6.0, 600)}},
               'method': {'DemoVal': {'psnr': (29.2, 600), 'niqe': (6.3, 600)}}}
    pairs = comparisons(GRID, results)
    verdicts = {p[3]: (round(p[4], 4), round(p[5], 4), p[6]) for p in pairs}
    assert verdicts == {'psnr': (0.2, 0.5, 'as claimed'), 'niqe': (0.3, -0.5, 'opposite')}
    text = markdown(GRID, 'demo', results, ['psnr.png'])
    assert '| Baseline | DemoVal | 600 | 6.0000 | 7.0000 | -1.0000 | 29.00 | 30.00 | -1.0000 |' in text
    assert '| Method | Baseline | DemoVal | psnr | +0.2000 | +0.5000 | as claimed | yes |' in text
    assert '| Method | Baseline | DemoVal | niqe | +0.3000 | -0.5000 | opposite | no |' in text
    assert '1 of 2 comparisons go the way the paper claims.' in text and 'Never ran' not in text
    assert 'Table 9, Set5' in text and '![psnr](psnr.png)' in text
    written = bar_charts(GRID, results, str(tmp_path))
    assert written == ['niqe.png', 'psnr.png'] and all((tmp_path / f).stat().st_size > 1000 for f in written)


def test_every_grid_names_existing_option_files_and_its_baselines():
    for grid in GRIDS.values():
        names = {run.name for run in grid.runs}
        for run in grid.runs:
            assert (REPO / 'options' / f'{run.name}.yml').is_file(), run.name
            assert (REPO / 'options' / 'demo' / f'{run.name}.yml').is_file(), run.name
            assert run.baseline is None or run.baseline in names
            assert set(run.paper) <= {'psnr', 'ssim', 'niqe', 'rmse', 'ms_ssim', 'gmsd', 'fsim'}


def test_report_only_collects_fixture_runs_into_results(tmp_path):
    fake_run(tmp_path, 'demo_fgd_lapsrn_x4_baseline', {'psnr': 29.5, 'ssim': 0.79}, weights=False)
    fake_run(tmp_path, 'demo_fgd_lapsrn_x4_fgd', {'psnr': 29.6, 'ssim': 0.80}, weights=False)
    result = subprocess.run([PYTHON, str(REPO / 'scripts' / 'reproduce.py'), '--paper', 'fgd', '--scale', 'demo',
                             '--report-only'], cwd=tmp_path, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr[-2000:]
    report = (tmp_path / 'results' / 'fgd' / 'demo' / 'report.md').read_text()
    assert '| LapSRN x4 + FD loss | LapSRN x4 | DemoVal | psnr | +0.1000 | +0.5800 | as claimed | yes |' in report
    assert (tmp_path / 'results' / 'fgd' / 'demo' / 'psnr.png').is_file()


def test_full_scale_without_data_refuses_and_says_how_to_prepare(tmp_path):
    result = subprocess.run([PYTHON, str(REPO / 'scripts' / 'reproduce.py'), '--paper', 'sploss', '--scale', 'full'],
                            cwd=tmp_path, capture_output=True, text=True)
    assert result.returncode != 0
    assert "reproduce.py: edsr_l1: datasets.train.dataroot_gt: 'datasets/DIV2K/DIV2K_train_HR_sub.lmdb' does not " \
           'exist' in result.stderr and 'Prepare it with: python scripts/prepare_dataset.py' in result.stderr


def test_full_scale_with_prepared_data_prints_one_torchrun_command_per_run(tmp_path):
    """The datasets' folders exist (empty stand-ins): every run of the grid gets its torchrun line, in grid order."""
    grid = GRIDS['fgd']
    for run in grid.runs:
        for dataset in read_option_file(str(REPO / 'options' / f'{run.name}.yml'))['datasets'].values():
            for key in ('dataroot_gt', 'dataroot_lq'):
                if dataset.get(key):
                    (tmp_path / dataset[key]).mkdir(parents=True, exist_ok=True)
    result = subprocess.run([PYTHON, str(REPO / 'scripts' / 'reproduce.py'), '--paper', 'fgd', '--scale', 'full',
                             '--nproc', '4'], cwd=tmp_path, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr[-2000:]
    lines = [line for line in result.stdout.splitlines() if line.startswith('torchrun')]
    assert [line.split(' -opt ')[1].split()[0].rsplit('/', 1)[-1] for line in lines] == \
        [f'{run.name}.yml' for run in grid.runs]
    assert all(line.startswith('torchrun --nproc_per_node=4 -m losses_plugin train -opt ') and
               line.endswith(' --launcher pytorch --auto_resume') for line in lines)
    assert '(0 of 11 runs have results)' in result.stdout
    assert (tmp_path / 'results' / 'fgd' / 'full' / 'report.md').read_text().count('No finished runs yet.') == 1
