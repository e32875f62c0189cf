"""The reproduction harness: collecting BasicSR's logged metrics, seeds (names, derived option files),
the report's mean ± std, noise rule and verdicts, the full-scale refusal without data and its torchrun
commands with data; on fixture runs written the way BasicSR writes them."""
import importlib.util
import json
import re
import shutil
import subprocess
import threading
import time
from dataclasses import replace
from pathlib import Path

import pytest
import torch
from conftest import PYTHON, REPO
from torch.utils.tensorboard import SummaryWriter

from losses_plugin.options import read_option_file
from losses_plugin.reproduction.grids import GRIDS, PaperGrid, Run
from losses_plugin.reproduction.locks import claimed
from losses_plugin.reproduction.report import (NOISE_RULE, Stat, aggregate, bar_charts, comparisons, markdown,
                                               noise_verdict, summarise)
from losses_plugin.reproduction.results import read_final_metrics, run_is_finished
from losses_plugin.reproduction.seeds import seed_option_file, seeds_of

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
    results = {'base': [{'DemoVal': {'psnr': (29.0, 600), 'niqe': (6.0, 600)}}],
               'method': [{'DemoVal': {'psnr': (29.2, 600), 'niqe': (6.3, 600)}}]}
    pairs = comparisons(GRID, results)
    verdicts = {p.metric: (round(p.ours, 4), round(p.paper, 4), p.direction, p.noise) for p in pairs}
    assert verdicts == {'psnr': (0.2, 0.5, 'as claimed', 'one seed'), 'niqe': (0.3, -0.5, 'opposite', 'one seed')}
    text = markdown(GRID, 'demo', results, ['psnr.png'])
    assert '| Baseline | DemoVal | 1 | 600 | 6.0000 | 7.0000 | -1.0000 | 29.00 | 30.00 | -1.0000 |' in text
    assert '| Method | Baseline | DemoVal | psnr | higher | +0.2000 |  | +0.5000 | one seed | agrees (one seed: ' \
           'untested) | yes |' in text
    assert '| Method | Baseline | DemoVal | niqe | lower | +0.3000 |  | -0.5000 | one seed | disagrees (one seed: ' \
           'untested) | no |' in text
    assert '2 have one seed (no noise verdict)' in text and 'Never ran' not in text
    assert 'Table 9, Set5' in text and '![psnr](psnr.png)' in text and '--seeds 1' in text
    written = bar_charts(GRID, results, str(tmp_path))
    assert written == ['niqe.png', 'psnr.png'] and all((tmp_path / f).stat().st_size > 1000 for f in written)


def test_a_cell_is_the_mean_and_sample_std_over_its_seeds():
    stat = summarise([29.0, 29.2, 29.7])
    assert stat.mean == pytest.approx(29.3) and stat.std == pytest.approx(0.36055513)  # sqrt(0.26 / 2)
    assert (stat.low, stat.high, stat.n) == (29.0, 29.7, 3) and stat.spread == pytest.approx(0.7)
    assert str(stat) == '29.30 ± 0.3606'
    one = summarise([0.8])
    assert (one.std, one.spread, str(one)) == (None, None, '0.8000')
    cell = aggregate([{'DemoVal': {'psnr': (29.0, 600), 'ssim': (0.80, 600)}},
                      {'DemoVal': {'psnr': (29.4, 600)}}])  # the second seed logged no ssim
    assert cell['DemoVal']['psnr'][0].mean == pytest.approx(29.2) and cell['DemoVal']['psnr'][1] == [600]
    assert cell['DemoVal']['ssim'][0].n == 1


def test_a_difference_is_real_only_beyond_the_larger_seed_spread():
    assert 'exceeds the larger of the two cells\' seed spreads' in NOISE_RULE and 'With 2 seeds' in NOISE_RULE
    method, base = Stat(29.375, None, 29.25, 29.5, 2), Stat(29.0, None, 28.875, 29.0, 2)  # spreads 0.25, 0.125
    assert noise_verdict(0.375, method, base) == 'real'
    assert noise_verdict(-0.375, method, base) == 'real'
    assert noise_verdict(0.2, method, base) == 'within noise'  # beyond the baseline's 0.125, not the method's 0.25
    assert noise_verdict(0.25, method, base) == 'within noise'  # equal to the spread is not beyond it
    assert noise_verdict(5.0, method, Stat(29.0, None, 29.0, 29.0, 1)) == 'one seed'


def test_two_seed_report_gives_mean_std_and_calls_each_comparison_real_or_within_noise():
    results = {'base': [{'DemoVal': {'psnr': (29.0, 600), 'niqe': (6.0, 600)}},
                        {'DemoVal': {'psnr': (29.1, 600), 'niqe': (6.4, 600)}}],
               'method': [{'DemoVal': {'psnr': (29.4, 600), 'niqe': (5.9, 600)}},
                          {'DemoVal': {'psnr': (29.5, 600), 'niqe': (6.1, 600)}}]}
    pairs = {p.metric: p for p in comparisons(GRID, results)}
    assert pairs['psnr'].ours == pytest.approx(0.4) and pairs['psnr'].spread == pytest.approx(0.1)
    assert (pairs['psnr'].noise, pairs['psnr'].measured) == ('real', 'agrees')
    assert replace(pairs['psnr'], direction='opposite').measured == 'disagrees'
    assert pairs['niqe'].ours == pytest.approx(-0.2) and pairs['niqe'].spread == pytest.approx(0.4)
    assert (pairs['niqe'].noise, pairs['niqe'].measured) == ('within noise', 'no effect beyond noise')
    text = markdown(GRID, 'demo', results, [], seeds=2)
    assert NOISE_RULE in text and '--seeds 2' in text
    assert '| Method | DemoVal | 2 | 600 | 6.0000 ± 0.1414 | 6.5000 | -0.5000 | 29.45 ± 0.0707 |' in text
    assert '| Method | Baseline | DemoVal | psnr | higher | +0.4000 | 0.1000 | +0.5000 | real | agrees | yes |' in text
    assert '| Method | Baseline | DemoVal | niqe | lower | -0.2000 | 0.4000 | -0.5000 | within noise | no effect ' \
           'beyond noise | yes |' in text
    assert 'Of 2 comparisons: 1 agrees with the paper\'s claim beyond seed noise, 0 disagree beyond seed noise, ' \
           '1 is within noise.' in text  # the verb agrees with the count
    assert '- **Method** vs Baseline (DemoVal): psnr +0.4000 (claim: higher, paper +0.5000): agrees; niqe -0.2000 ' \
           '(claim: lower, paper -0.5000): no effect beyond noise.' in text


def test_seed_one_is_the_option_file_and_later_seeds_differ_only_in_name_and_manual_seed(tmp_path):
    path = str(REPO / 'options' / 'demo' / 'edsr_l1.yml')
    opt = read_option_file(path)
    seeds = seeds_of(opt, 3)
    assert [(s.index, s.experiment, s.manual_seed) for s in seeds] == [
        (1, 'demo_edsr_l1', 10), (2, 'demo_edsr_l1_seed11', 11), (3, 'demo_edsr_l1_seed12', 12)]
    assert seed_option_file(path, opt, seeds[0], str(tmp_path)) == path
    derived = read_option_file(seed_option_file(path, opt, seeds[2], str(tmp_path)))
    assert (derived['name'], derived['manual_seed']) == ('demo_edsr_l1_seed12', 12)
    assert list(derived) == list(opt)
    assert dict(derived, name=opt['name'], manual_seed=10) == opt
    assert read_option_file(path)['name'] == 'demo_edsr_l1'  # the option file itself is untouched
    with pytest.raises(ValueError, match='--seeds must be at least 1'):
        seeds_of(opt, 0)
    with pytest.raises(ValueError, match='seeds need an integer manual_seed'):
        seeds_of(dict(opt, manual_seed=None), 2)


def test_every_grid_names_existing_option_files_and_its_baselines():
    for grid in GRIDS.values():
        names = {run.name for run in grid.runs}
        for run in grid.runs:
            assert (REPO / 'options' / f'{run.name}.yml').is_file(), run.name
            assert (REPO / 'options' / 'demo' / f'{run.name}.yml').is_file(), run.name
            assert run.baseline is None or run.baseline in names
            assert set(run.paper) <= {'psnr', 'ssim', 'niqe', 'rmse', 'ms_ssim', 'gmsd', 'fsim', 'lpips'}


def test_report_only_collects_fixture_runs_into_results(tmp_path):
    """Finished runs enter the tables; one stopped after its iteration-300 validation is named as left out."""
    fake_run(tmp_path, 'demo_fgd_lapsrn_x4_baseline', {'psnr': 29.5, 'ssim': 0.79}, weights=False)
    fake_run(tmp_path, 'demo_fgd_lapsrn_x4_fgd', {'psnr': 29.6, 'ssim': 0.80}, weights=False)
    fake_run(tmp_path, 'demo_fgd_lapsrn_x4_cs', {'psnr': 19.0, 'ssim': 0.5}, steps=(300,), weights=False)
    result = subprocess.run([PYTHON, str(REPO / 'scripts' / 'reproduce.py'), '--paper', 'fgd', '--scale', 'demo',
                             '--report-only'], cwd=tmp_path, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr[-2000:]
    report = (tmp_path / 'results' / 'fgd' / 'demo' / 'report.md').read_text()
    assert '| LapSRN x4 + FD loss | LapSRN x4 | DemoVal | psnr | higher | +0.1000 |  | +0.5800 | one seed | agrees ' \
           '(one seed: untested) | yes |' in report
    assert (tmp_path / 'results' / 'fgd' / 'demo' / 'psnr.png').is_file()
    assert 'CS loss' not in report and '19.00' not in report
    assert 'Not finished, so left out of every table and comparison (9 of 11 seeds): `demo_fgd_lapsrn_x2_baseline`' \
        in report and '`demo_fgd_lapsrn_x4_cs`, `demo_fgd_edsr_x4_l1`' in report
    assert '(2 of 11 runs have results, 2 of 11 seeds)' in result.stdout


def test_report_only_with_seeds_collects_each_seeds_experiment(tmp_path):
    """Seed 2 of a run is tb_logger/<name>_seed<manual_seed + 1>; the report pools the seeds per cell."""
    fake_run(tmp_path, 'demo_edsr_l1', {'psnr': 29.8, 'ssim': 0.800, 'niqe': 6.8}, weights=False)
    fake_run(tmp_path, 'demo_edsr_l1_seed11', {'psnr': 29.9, 'ssim': 0.802, 'niqe': 6.9}, weights=False)
    fake_run(tmp_path, 'demo_edsr_sploss', {'psnr': 29.85, 'ssim': 0.806, 'niqe': 6.4}, weights=False)
    fake_run(tmp_path, 'demo_edsr_sploss_seed11', {'psnr': 29.85, 'ssim': 0.804, 'niqe': 6.6}, weights=False)
    fake_run(tmp_path, 'demo_edsr_sploss_seed12', {'psnr': 1.0}, weights=False)  # a third seed: not asked for
    result = subprocess.run([PYTHON, str(REPO / 'scripts' / 'reproduce.py'), '--paper', 'sploss', '--scale', 'demo',
                             '--seeds', '2', '--report-only'], cwd=tmp_path, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr[-2000:]
    assert '(2 of 10 runs have results, 4 of 20 seeds)' in result.stdout
    report = (tmp_path / 'results' / 'sploss' / 'demo' / 'report.md').read_text()
    assert '| EDSR-SP (alpha 2) | DemoVal | 2 | 600 | 6.5000 ± 0.1414 | 6.8699 | -0.3699 | 29.85 ± 0.0000 |' in report
    assert '| EDSR-SP (alpha 2) | EDSR, L1 | DemoVal | niqe | lower | -0.3500 | 0.2000 | -0.2742 | real | agrees | ' \
           'yes |' in report
    assert '| EDSR-SP (alpha 2) | EDSR, L1 | DemoVal | ssim | higher | +0.0040 | 0.0020 | -0.0006 | real | agrees | ' \
           'no |' in report


def test_a_report_is_rewritten_from_seeds_json_once_the_logs_are_gone(tmp_path):
    """seeds.json keeps each finished seed's final metrics; with tb_logger deleted the tables are the same and
    the report names the seeds it read from the record; a record for another total_iter is not used."""
    fake_run(tmp_path, 'demo_edsr_l1', {'psnr': 29.8, 'ssim': 0.800, 'niqe': 6.8}, weights=False)
    fake_run(tmp_path, 'demo_edsr_l1_seed11', {'psnr': 29.9, 'ssim': 0.802, 'niqe': 6.9}, weights=False)
    fake_run(tmp_path, 'demo_edsr_sploss', {'psnr': 29.85, 'ssim': 0.806, 'niqe': 6.4}, weights=False)
    command = [PYTHON, str(REPO / 'scripts' / 'reproduce.py'), '--paper', 'sploss', '--scale', 'demo', '--seeds', '2',
               '--report-only']
    first = subprocess.run(command, cwd=tmp_path, capture_output=True, text=True)
    assert first.returncode == 0, first.stderr[-2000:]
    out = tmp_path / 'results' / 'sploss' / 'demo'
    record = json.loads((out / 'seeds.json').read_text())
    assert sorted(record) == ['demo_edsr_l1', 'demo_edsr_l1_seed11', 'demo_edsr_sploss']
    assert record['demo_edsr_l1_seed11']['metrics']['DemoVal']['psnr'] == [pytest.approx(29.9), 600]
    assert record['demo_edsr_l1']['total_iter'] == 600 and record['demo_edsr_l1']['recorded']
    assert 'Read from' not in (out / 'report.md').read_text()
    record['demo_edsr_l1']['recorded'] = '2026-01-01'  # a rewrite keeps the date of an unchanged seed
    (out / 'seeds.json').write_text(json.dumps(record))
    assert subprocess.run(command, cwd=tmp_path, capture_output=True).returncode == 0
    assert json.loads((out / 'seeds.json').read_text())['demo_edsr_l1']['recorded'] == '2026-01-01'

    shutil.rmtree(tmp_path / 'tb_logger')
    fake_run(tmp_path, 'demo_edsr_sploss_seed11', {'psnr': 29.85, 'ssim': 0.804, 'niqe': 6.6}, weights=False)
    record['demo_edsr_l1_seed11']['total_iter'] = 700  # recorded for another schedule: not this run's seed
    (out / 'seeds.json').write_text(json.dumps(record))
    second = subprocess.run(command, cwd=tmp_path, capture_output=True, text=True)
    assert second.returncode == 0, second.stderr[-2000:]
    assert '(2 of 10 runs have results, 3 of 20 seeds, 2 of them from results/sploss/demo/seeds.json)' in \
        second.stdout
    report = (out / 'report.md').read_text()
    assert re.search(r'Read from `seeds.json`, their logs gone \(2 of 20 seeds, trained 2026-01-01 at (\w+|no commit), '
                     r'\d{4}-\d\d-\d\d at (\w+|no commit)\): `demo_edsr_l1`, `demo_edsr_sploss`\.', report)
    assert '`demo_edsr_l1_seed11`' in report.split('Not finished')[1].split('\n')[0]
    assert '| EDSR, L1 | DemoVal | 1 | 600 | 6.8000 |' in report
    assert '| EDSR-SP (alpha 2) | DemoVal | 2 | 600 | 6.5000 ± 0.1414 |' in report
    assert 'demo_edsr_sploss_seed11' in json.loads((out / 'seeds.json').read_text())


@pytest.fixture
def reproduce():
    """``scripts/reproduce.py`` loaded as a module (a script, not part of the package)."""
    spec = importlib.util.spec_from_file_location('reproduce_script', REPO / 'scripts' / 'reproduce.py')
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_demo_training_skips_recorded_seeds_and_records_each_seed_as_it_finishes(tmp_path, monkeypatch, reproduce):
    """A seed in seeds.json is not trained again; each trained seed enters seeds.json before the next one
    starts, so a grid stopped by a failure (or the end of a session) keeps what it trained."""
    monkeypatch.chdir(tmp_path)
    out = tmp_path / 'report'
    out.mkdir()
    (out / 'seeds.json').write_text(json.dumps({'demo_edsr_l1': {
        'total_iter': 600, 'recorded': '2026-01-01', 'commit': 'abc', 'metrics': {'DemoVal': {'psnr': [29.0, 600]}}}}))
    trained, seen_in_record = [], []

    real_run = subprocess.run

    def fake_training(command, **kwargs):
        if 'train' not in command:  # git rev-parse for the record's commit
            return real_run(command, **kwargs)
        name = read_option_file(command[command.index('-opt') + 1])['name']
        seen_in_record.append(sorted(json.loads((out / 'seeds.json').read_text())))
        if len(trained) == 2:
            return subprocess.CompletedProcess(command, 1)
        fake_run(tmp_path, name, {'psnr': 30.0 + len(trained)}, weights=False)
        trained.append(name)
        return subprocess.CompletedProcess(command, 0)

    monkeypatch.setattr(reproduce.subprocess, 'run', fake_training)
    monkeypatch.setattr(reproduce.torch, 'get_num_threads', lambda: 3)
    grid = replace(GRIDS['sploss'], runs=GRIDS['sploss'].runs[:2])
    with pytest.raises(SystemExit, match='^demo_edsr_sploss_seed11 failed; its log is in'):
        reproduce.train_demo_runs(grid, 2, False, str(out))
    assert trained == ['demo_edsr_l1_seed11', 'demo_edsr_sploss']
    assert seen_in_record == [['demo_edsr_l1'], ['demo_edsr_l1', 'demo_edsr_l1_seed11'],
                              ['demo_edsr_l1', 'demo_edsr_l1_seed11', 'demo_edsr_sploss']]
    record = json.loads((out / 'seeds.json').read_text())
    assert record['demo_edsr_sploss']['metrics']['DemoVal']['psnr'] == [pytest.approx(31.0), 600]
    assert record['demo_edsr_l1']['recorded'] == '2026-01-01'  # kept, not retrained
    # the digits of a CPU run follow its thread count: each seed trained here says how many it had
    assert record['demo_edsr_sploss']['threads'] == record['demo_edsr_l1_seed11']['threads'] == 3
    assert 'threads' not in record['demo_edsr_l1']

    trained.clear()
    with pytest.raises(SystemExit, match='^demo_edsr_sploss failed'):  # --force retrains recorded seeds too
        reproduce.train_demo_runs(grid, 2, True, str(out))
    assert trained == ['demo_edsr_l1', 'demo_edsr_l1_seed11']


def test_two_processes_on_one_grid_skip_each_others_seeds_and_keep_each_others_records(tmp_path, monkeypatch,
                                                                                        capsys, reproduce):
    """Another reproduce.py holds the claim on one seed (it is training it): that seed is skipped, not trained
    twice; a seed it records in seeds.json while we train ours stays there when we record ours."""
    monkeypatch.chdir(tmp_path)
    out = tmp_path / 'report'
    other_entry = {'total_iter': 600, 'recorded': '2026-01-01', 'commit': 'abc', 'threads': 1,
                   'metrics': {'DemoVal': {'psnr': [29.5, 600]}}}
    trained = []
    real_run = subprocess.run

    def fake_training(command, **kwargs):
        if 'train' not in command:
            return real_run(command, **kwargs)
        name = read_option_file(command[command.index('-opt') + 1])['name']
        if name == 'demo_edsr_l1':  # meanwhile the other process records the seed it trained
            record = json.loads((out / 'seeds.json').read_text()) if (out / 'seeds.json').exists() else {}
            (out / 'seeds.json').write_text(json.dumps(dict(record, demo_edsr_sploss_seed11=other_entry)))
        fake_run(tmp_path, name, {'psnr': 30.0 + len(trained)}, weights=False)
        trained.append(name)
        return subprocess.CompletedProcess(command, 0)

    monkeypatch.setattr(reproduce.subprocess, 'run', fake_training)
    grid = replace(GRIDS['sploss'], runs=GRIDS['sploss'].runs[:2])
    with claimed('demo_edsr_l1_seed11') as ours:  # another open of the claim file: as another process's
        assert ours
        reproduce.train_demo_runs(grid, 2, False, str(out))
    assert trained == ['demo_edsr_l1', 'demo_edsr_sploss']
    assert 'demo_edsr_l1_seed11: being trained by another reproduce.py, skipped' in capsys.readouterr().out
    record = json.loads((out / 'seeds.json').read_text())
    assert sorted(record) == ['demo_edsr_l1', 'demo_edsr_sploss', 'demo_edsr_sploss_seed11']
    assert record['demo_edsr_sploss_seed11'] == other_entry  # recorded by the other process, not retrained
    assert record['demo_edsr_sploss']['metrics']['DemoVal']['psnr'] == [pytest.approx(31.0), 600]
    assert not list(out.glob('*.tmp*'))


def test_a_seed_that_loads_another_runs_weights_waits_until_that_run_is_trained(tmp_path, monkeypatch, capsys,
                                                                                   reproduce):
    """UDL's stage 2 loads stage 1's estimator: while another reproduce.py trains stage 1, stage 2 waits."""
    monkeypatch.chdir(tmp_path)
    opt = read_option_file(str(REPO / 'options' / 'demo' / 'tlw_hat_x4_l1_udl.yml'))
    seed = seeds_of(opt, 2)[1]
    events = []
    taken = threading.Event()

    def other_process_trains_stage_1():
        with claimed('demo_tlw_hat_x4_esu'):
            taken.set()
            time.sleep(1.0)
            events.append('stage 1 trained')

    other = threading.Thread(target=other_process_trains_stage_1)
    other.start()
    taken.wait()
    reproduce.wait_for_weights_it_loads(seed, opt)
    events.append('stage 2 starts')
    other.join()
    assert events == ['stage 1 trained', 'stage 2 starts']
    assert ('demo_tlw_hat_x4_l1_udl_seed11: waiting for another reproduce.py to finish demo_tlw_hat_x4_esu, whose '
            'weights it loads') in capsys.readouterr().out
    reproduce.wait_for_weights_it_loads(seed, opt)  # nobody trains it: no wait, no message
    assert capsys.readouterr().out == ''


def test_a_claim_is_exclusive_and_dies_with_its_process(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    holder = subprocess.Popen([PYTHON, '-c', 'import sys, time\n'
                               'from losses_plugin.reproduction.locks import claimed\n'
                               'with claimed("demo_x") as ours:\n'
                               '    print(ours, flush=True); time.sleep(60)'],
                              cwd=tmp_path, stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == 'True'
        with claimed('demo_x') as ours:
            assert not ours
        with claimed('demo_y') as ours:
            assert ours
    finally:
        holder.kill()
        holder.wait()
    with claimed('demo_x') as ours:  # killed: the kernel released its lock
        assert ours


def test_full_scale_without_data_refuses_and_says_how_to_prepare(tmp_path):
    result = subprocess.run([PYTHON, str(REPO / 'scripts' / 'reproduce.py'), '--paper', 'sploss', '--scale', 'full'],
                            cwd=tmp_path, capture_output=True, text=True)
    assert result.returncode != 0
    assert "reproduce.py: edsr_l1: datasets.train.dataroot_gt: 'datasets/DIV2K/DIV2K_train_HR_sub.lmdb' does not " \
           'exist' in result.stderr and 'Prepare it with: python scripts/prepare_dataset.py' in result.stderr


def prepare_empty_datasets(grid, root):
    """Empty stand-ins under ``root`` for every dataset folder of the grid's full-scale option files."""
    for run in grid.runs:
        for dataset in read_option_file(str(REPO / 'options' / f'{run.name}.yml'))['datasets'].values():
            for key in ('dataroot_gt', 'dataroot_lq'):
                if dataset.get(key):
                    (root / dataset[key]).mkdir(parents=True, exist_ok=True)


def test_full_scale_with_prepared_data_prints_one_torchrun_command_per_run(tmp_path):
    """The datasets' folders exist (empty stand-ins): every run of the grid gets its torchrun line, in grid order."""
    grid = GRIDS['fgd']
    prepare_empty_datasets(grid, tmp_path)
    result = subprocess.run([PYTHON, str(REPO / 'scripts' / 'reproduce.py'), '--paper', 'fgd', '--scale', 'full',
                             '--nproc', '4'], cwd=tmp_path, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr[-2000:]
    lines = [line for line in result.stdout.splitlines() if line.startswith('torchrun')]
    assert [line.split(' -opt ')[1].split()[0].rsplit('/', 1)[-1] for line in lines] == \
        [f'{run.name}.yml' for run in grid.runs]
    assert all(line.startswith('torchrun --nproc_per_node=4 -m losses_plugin train -opt ') and
               line.endswith(' --launcher pytorch --auto_resume') for line in lines)
    assert '(0 of 11 runs have results, 0 of 11 seeds)' in result.stdout
    assert (tmp_path / 'results' / 'fgd' / 'full' / 'report.md').read_text().count('No finished runs yet.') == 1

    result = subprocess.run([PYTHON, str(REPO / 'scripts' / 'reproduce.py'), '--paper', 'fgd', '--scale', 'full',
                             '--nproc', '4', '--seeds', '2'], cwd=tmp_path, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr[-2000:]
    options = [line.split(' -opt ')[1].split()[0] for line in result.stdout.splitlines() if line.startswith('torchrun')]
    assert len(options) == 2 * len(grid.runs)
    for run, seed1, seed2 in zip(grid.runs, options[::2], options[1::2]):
        first = read_option_file(str(REPO / 'options' / f'{run.name}.yml'))
        assert seed1.endswith(f'options/{run.name}.yml')
        assert seed2 == f'experiments/seed_options/{first["name"]}_seed{first["manual_seed"] + 1}.yml'
        second = read_option_file(str(tmp_path / seed2))
        assert second['manual_seed'] == first['manual_seed'] + 1 and second['name'] == Path(seed2).stem
    assert '(0 of 11 runs have results, 0 of 22 seeds)' in result.stdout


def test_runs_selects_which_runs_train_and_the_report_still_covers_the_grid(tmp_path):
    """--runs: only the named runs get their torchrun lines (in grid order, whatever the order given); the
    report counts every run of the grid; a name not in the grid is refused with the grid's names."""
    prepare_empty_datasets(GRIDS['fgd'], tmp_path)
    command = [PYTHON, str(REPO / 'scripts' / 'reproduce.py'), '--paper', 'fgd', '--scale', 'full', '--runs']
    result = subprocess.run(command + ['fgd_edsr_x4_fgd', 'fgd_lapsrn_x3_cs'], cwd=tmp_path, capture_output=True,
                            text=True)
    assert result.returncode == 0, result.stderr[-2000:]
    lines = [line for line in result.stdout.splitlines() if line.startswith('torchrun')]
    assert [line.split(' -opt ')[1].split()[0].rsplit('/', 1)[-1] for line in lines] == [
        'fgd_lapsrn_x3_cs.yml', 'fgd_edsr_x4_fgd.yml']
    assert '(0 of 11 runs have results, 0 of 11 seeds)' in result.stdout
    result = subprocess.run(command + ['fgd_edsr_x4_fgd', 'edsr_l1'], cwd=tmp_path, capture_output=True, text=True)
    assert result.returncode == 1
    assert result.stderr.strip().splitlines()[-1] == (
        'reproduce.py: --runs: edsr_l1 not in the fgd grid, whose runs are '
        + ', '.join(run.name for run in GRIDS['fgd'].runs))
