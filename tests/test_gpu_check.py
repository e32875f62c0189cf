"""``scripts/gpu_check.py``, the first check on a GPU machine: without CUDA it stops with one line; with
``--device cpu`` it runs its checks on the CPU (two iterations), so the script itself keeps working here."""
import importlib.util
import subprocess
import sys

import pytest
from conftest import REPO

SCRIPT = REPO / 'scripts' / 'gpu_check.py'


@pytest.fixture(scope='module')
def gpu_check():
    spec = importlib.util.spec_from_file_location('gpu_check', SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_without_cuda_it_stops_with_one_line(tmp_path):
    result = subprocess.run([sys.executable, str(SCRIPT), '--work', str(tmp_path)], capture_output=True, text=True)
    assert result.returncode == 1 and result.stdout == ''
    assert result.stderr.splitlines() == [
        'gpu_check: no CUDA device is visible (torch.cuda.is_available() is False); this script checks the GPU '
        'path: run it on a GPU machine, or with --device cpu for a dry run']
    assert not any(tmp_path.iterdir())  # and did nothing else


def fake_run(tmp_path, gpu_check, log_line, code=0, validation='\t # psnr: 21.5000\tBest: 21.5000 @ 2 iter'):
    """A Checker whose training process is replaced: exit ``code``, and a log with ``log_line``."""
    args = gpu_check.argparse.Namespace(work=str(tmp_path), iters=2)
    checker = gpu_check.Checker(args)

    def train(opt, launcher=None, env=None, extra=()):
        folder = tmp_path / 'experiments' / opt['name']
        folder.mkdir(parents=True)
        (folder / 'train_x.log').write_text(f'{log_line}\n{validation}\nPeak CUDA memory allocated: 812 MiB\n')
        return code, 'Traceback ...\nRuntimeError: CUDA error: an illegal memory access was encountered', 3.0

    checker.train = train
    checker.check('TLWModel', 'bfloat16', '1 GPU', 1)
    return checker.rows[-1]


LINE = ('2026-12-07 11:00:00,000 INFO: [gpu_c..][epoch:  0, iter:       2, lr:(1.000e-04,1.000e-04,)] [eta: 0:00:00, '
        'time (data): 0.052 (0.001)] l_pix: 5.8250e-02 l_w: -1.2000e-01 wc: 1.1000e+00 k: 3.0000e-01 ')


def test_a_passing_check_reads_its_losses_speed_metric_and_memory(tmp_path, gpu_check):
    row = fake_run(tmp_path, gpu_check, LINE)
    assert row == {'check': 'TLWModel [1 GPU]', 'precision': 'bfloat16', 'result': 'ok', 'loss': 'l_pix 0.05825',
                   'psnr': '21.50', 'ms/iter': '52', 'peak MiB': '812', 'wall s': '3'}


@pytest.mark.parametrize('line, code, validation, result', [
    (LINE, 1, '', 'exit 1: RuntimeError: CUDA error: an illegal memory access was encountered'),
    (LINE.replace('l_pix: 5.8250e-02', 'l_pix: nan'), 0, '', "losses {'l_pix': nan, 'l_w': -0.12, 'wc': 1.1, "
                                                              "'k': 0.3}"),
    ('no iteration logged', 0, '', 'losses not logged'),
    (LINE, 0, '\t # psnr: nan\tBest: nan @ 2 iter', "validation {'psnr': nan}"),
    (LINE, 0, 'no validation', 'validation not logged'),
])
def test_a_failing_check_says_why(tmp_path, gpu_check, line, code, validation, result):
    assert fake_run(tmp_path, gpu_check, line, code, validation)['result'] == result


@pytest.mark.slow
def test_a_dry_run_on_the_cpu_passes_its_checks_and_writes_the_table(tmp_path):
    """UDL's two stages (the second trains on the first's estimator, found by run name) and the resume check,
    which compares a run stopped half-way and resumed with the same run uninterrupted."""
    out = tmp_path / 'table.md'
    result = subprocess.run([sys.executable, str(SCRIPT), '--device', 'cpu', '--iters', '2', '--precisions', 'float32',
                             '--families', 'UDLModel esu', 'UDLModel udl', '--work', str(tmp_path / 'work'),
                             '--out', str(out)], capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stdout + result.stderr
    table = out.read_text()
    assert '3 of 3 checks passed' in table
    assert '| UDLModel udl [CPU] | float32 | ok | l_pix ' in table
    assert '| SRModel + SPLoss [resume at 1 of 2, deterministic] | float32 | ok: bit-identical |' in table
    assert 'Skipped: DataParallel and 2-process torchrun (NCCL): 0 GPUs visible, they need 2+.' in table
