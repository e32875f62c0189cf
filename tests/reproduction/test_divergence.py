"""Diverged seeds in the reproduction reports: a logged loss that spiked, or a final PSNR far below the cell's
other seeds; shown, and every verdict they touch given with and without them."""
import json
import subprocess

from conftest import PYTHON, REPO
from test_harness import GRID, fake_run
from torch.utils.tensorboard import SummaryWriter

from losses_plugin.reproduction.divergence import diverged_seeds, loss_curve, spike_in_curve
from losses_plugin.reproduction.report import comparisons, markdown, without_diverged

CALM = [0.30, 0.20, 0.15, 0.12, 0.10, 0.09, 0.11, 0.08, 0.09, 0.07, 0.08, 0.07]  # every 50 iterations, 50..600
# the demo EDSR of the issue: l_pix 0.02-0.07, then 10-20x within 200 iterations, never back
BLOWN = CALM[:7] + [0.25, 0.9, 1.2, 1.1, 1.0]


def log_losses(root, name, values, key='l_pix'):
    writer = SummaryWriter(log_dir=str(root / 'tb_logger' / name))
    for i, value in enumerate(values):
        writer.add_scalar(f'losses/{key}', value, 50 * (i + 1))
    writer.close()


def test_a_logged_loss_curve_spikes_where_its_moving_mean_passes_3x_its_lowest(tmp_path):
    log_losses(tmp_path, 'blown', BLOWN)
    log_losses(tmp_path, 'calm', CALM)
    curve = loss_curve(str(tmp_path / 'tb_logger' / 'blown'))
    assert sorted(curve) == list(range(50, 601, 50)) and abs(curve[400]['l_pix'] - 0.25) < 1e-6
    # warm-up to iteration 120 (a fifth of 600); means of 3 points: the lowest (0.10+0.09+0.11)/3 = 0.1 at 350,
    # (0.09+0.11+0.25)/3 = 0.15 at 400, (0.11+0.25+0.9)/3 = 0.42 > 3 x 0.1 at 450
    assert spike_in_curve(curve) == 450
    assert spike_in_curve(loss_curve(str(tmp_path / 'tb_logger' / 'calm'))) is None
    assert spike_in_curve({}) is None and loss_curve(str(tmp_path / 'tb_logger' / 'none')) == {}


def test_the_total_is_watched_where_a_model_logs_one(tmp_path):
    log_losses(tmp_path, 'fgd', BLOWN, key='l_total')
    assert spike_in_curve(loss_curve(str(tmp_path / 'tb_logger' / 'fgd'))) == 450


def seed(psnr):
    return {'DemoVal': {'psnr': (psnr, 600)}}


def test_a_seed_diverged_when_its_loss_spiked_or_its_psnr_is_over_3_db_below_the_others():
    assert diverged_seeds([seed(27.5), seed(15.9)], [None, None]) == {
        1: "its DemoVal PSNR, 15.90 dB, is more than 3 dB below its cell's other seeds (27.50)"}
    assert diverged_seeds([seed(27.5), seed(25.0)], [None, None]) == {}  # a 2.5 dB spread is a demosaicking cell's
    assert diverged_seeds([seed(27.5), seed(27.4)], [450, None]) == {0: 'its training loss spiked at iteration 450'}
    assert diverged_seeds([seed(27.5)], [None]) == {}


def test_the_report_shows_diverged_seeds_and_each_verdict_without_them():
    results = {'base': [{'DemoVal': {'psnr': (29.0, 600), 'niqe': (6.0, 600)}},
                        {'DemoVal': {'psnr': (29.1, 600), 'niqe': (6.1, 600)}}],
               'method': [{'DemoVal': {'psnr': (29.5, 600), 'niqe': (5.5, 600)}},
                          {'DemoVal': {'psnr': (29.6, 600), 'niqe': (5.6, 600)}},
                          {'DemoVal': {'psnr': (20.0, 600), 'niqe': (9.0, 600)}}]}
    diverged = {'method': {2: ('demo_method_seed12', diverged_seeds(results['method'], [None] * 3)[2])}}
    assert without_diverged(results, diverged)['method'] == results['method'][:2]
    with_all = {p.metric: p.measured for p in comparisons(GRID, results)}
    assert with_all == {'psnr': 'no effect beyond noise', 'niqe': 'no effect beyond noise'}  # the blown seed decides
    text = markdown(GRID, 'demo', results, [], seeds=3, diverged=diverged)
    assert ("- `demo_method_seed12` (Method): its DemoVal PSNR, 20.00 dB, is more than 3 dB below its cell's other "
            'seeds (29.50, 29.60).') in text
    assert ('| Method | Baseline | DemoVal | psnr | -2.6833 (spread 9.6000): no effect beyond noise | +0.5000 (spread '
            '0.1000): agrees |') in text
    assert ('| Method | Baseline | DemoVal | niqe | +0.6500 (spread 3.5000): no effect beyond noise | -0.5000 (spread '
            '0.1000): agrees |') in text
    assert '## Diverged seeds' not in markdown(GRID, 'demo', results, [], seeds=3)


def test_reproduce_marks_a_seed_whose_logged_loss_spiked_and_records_it(tmp_path):
    fake_run(tmp_path, 'demo_edsr_l1', {'psnr': 29.8, 'ssim': 0.800, 'niqe': 6.8}, weights=False)
    fake_run(tmp_path, 'demo_edsr_l1_seed11', {'psnr': 29.9, 'ssim': 0.802, 'niqe': 6.9}, weights=False)
    log_losses(tmp_path, 'demo_edsr_l1', CALM)
    log_losses(tmp_path, 'demo_edsr_l1_seed11', BLOWN)
    command = [PYTHON, str(REPO / 'scripts' / 'reproduce.py'), '--paper', 'sploss', '--scale', 'demo', '--seeds', '2',
               '--report-only']
    result = subprocess.run(command, cwd=tmp_path, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr[-2000:]
    out = tmp_path / 'results' / 'sploss' / 'demo'
    record = json.loads((out / 'seeds.json').read_text())
    assert record['demo_edsr_l1_seed11']['loss_spike'] == 450 and record['demo_edsr_l1']['loss_spike'] is None
    assert ('- `demo_edsr_l1_seed11` (EDSR, L1): its training loss spiked at iteration 450.'
            in (out / 'report.md').read_text())
