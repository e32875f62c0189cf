"""The first thing to run on a GPU machine: every model family trains on CUDA through the real command line.

    bash scripts/gpu_check.sh [--iters 20] [--out gpu_check.md] [--work experiments_gpu_check]

Each check is a ``basicsr train`` process on the demo data (built into ``--work``), from the demo option file
of its family with ``--iters`` iterations, one validation at the end and one log line:

- SRModel + SPLoss, TLWModel, UDLModel (stage esu, then stage udl on that run's estimator), FGDModel, and
  StageSupervisedModel (MPRNet on the GoPro-like set), each in float32, bfloat16 and float16 (GradScaler), on
  one GPU;
- with 2+ GPUs visible: each family under DataParallel (``num_gpu`` = the GPUs, no launcher) in float32 and
  bfloat16, and under a 2-process ``torchrun`` (NCCL);
- one resume: a run stopped half-way and continued with ``--auto_resume`` against the same run uninterrupted,
  both with ``train.deterministic: true``; their final weights must be identical;
- the CUDA rows of ``scripts/benchmark_training_step.py`` (ms per iteration, peak memory).

A check passes when its process exits 0 with finite losses and a validation PSNR. One table goes to the screen
and to ``--out`` (Markdown). Without CUDA it stops at once with one line; ``--device cpu`` runs the same checks
on the CPU (what the test suite does with two iterations, so the script itself keeps working).
"""
import argparse
import copy
import math
import os
import re
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
DEMO = ROOT / 'options' / 'demo'
PRECISIONS = ('float32', 'bfloat16', 'float16')
# family -> its demo option file
FAMILIES = {
    'SRModel + SPLoss': 'edsr_sploss.yml',
    'TLWModel': 'tlw_edsr_x4_l1_tlw.yml',
    'UDLModel esu': 'udl_edsr_x4_esu.yml',
    'UDLModel udl': 'udl_edsr_x4_l1_udl.yml',  # its estimator: the esu run of the same precision and mode
    'FGDModel': 'fgd_edsr_x4_fgd.yml',
    'StageSupervisedModel (MPRNet)': 'mprnet_gopro_sploss.yml',
}
RUN_TIMEOUT = 300  # seconds per training process


def slug(text):
    return re.sub(r'[^a-z0-9]+', '_', text.lower()).strip('_')


def free_port():
    with socket.socket() as s:
        s.bind(('127.0.0.1', 0))
        return s.getsockname()[1]


def check_options(family, precision, mode, iters, num_gpu, name, save_every=None):
    """The family's demo options for one check: ``iters`` iterations, a validation at the end, no TensorBoard."""
    opt = yaml.safe_load((DEMO / FAMILIES[family]).read_text())
    opt.update(name=name, num_gpu=num_gpu, manual_seed=10)
    train = opt['train']
    train['total_iter'] = iters
    train.pop('amp', None)
    if precision != 'float32':
        train['amp'] = {'dtype': precision}
    if family == 'UDLModel udl':
        esu = run_name('UDLModel esu', precision, mode)
        train['uncertainty_estimator']['pretrain_path'] = f'experiments/{esu}/models/net_g_latest.pth'
    opt['logger'].update(print_freq=iters, save_checkpoint_freq=save_every or iters, use_tb_logger=False)
    opt['val'].update(val_freq=iters, save_img=False)
    return opt


def run_name(family, precision, mode):
    return f'gpu_check_{slug(family)}_{precision}_{slug(mode)}'


def read_log(experiment):
    """(losses of the last log line, seconds per iteration, validation metrics, peak CUDA MiB) of a run's logs."""
    text = '\n'.join(p.read_text() for p in sorted(Path(experiment).glob('train_*.log')))
    losses, seconds = {}, None
    lines = [line for line in text.splitlines() if 'time (data):' in line]
    if lines:
        seconds = float(re.search(r'time \(data\): ([\d.]+)', lines[-1]).group(1))
        losses = {k: float(v) for k, v in re.findall(r'(\w+): (\S+)', lines[-1].split(']')[-1]) if _is_float(v)}
    metrics = {k: float(v) for k, v in re.findall(r'# (\w+): ([-\d.]+|nan|inf)', text)}
    peak = re.findall(r'Peak CUDA memory allocated: (\d+) MiB', text)
    return losses, seconds, metrics, int(peak[-1]) if peak else None


def _is_float(text):
    try:
        float(text)
    except ValueError:
        return False
    return True


class Checker:
    """Runs the checks in ``work`` and collects one row per check."""

    def __init__(self, args):
        self.args = args
        self.work = Path(args.work).resolve()
        self.rows = []
        self.python = sys.executable

    def train(self, opt, launcher=None, env=None, extra=()):
        path = self.work / 'options' / f"{opt['name']}.yml"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(yaml.safe_dump(opt, sort_keys=False))
        command = (launcher or [self.python]) + ['-m', 'losses_plugin', 'train', '-opt', str(path), *extra]
        started = time.time()
        try:
            result = subprocess.run(command, cwd=self.work, env=dict(os.environ, **(env or {})), capture_output=True,
                                    text=True, timeout=RUN_TIMEOUT)
            code, output = result.returncode, result.stdout + result.stderr
        except subprocess.TimeoutExpired as e:
            code, output = 'timeout', f'{e.stdout or ""}{e.stderr or ""}\nran past {RUN_TIMEOUT} s'
        return code, output, time.time() - started

    def check(self, family, precision, mode, num_gpu, launcher=None, env=None):
        name = run_name(family, precision, mode)
        shutil.rmtree(self.work / 'experiments' / name, ignore_errors=True)
        code, output, wall = self.train(check_options(family, precision, mode, self.args.iters, num_gpu, name),
                                        launcher, env, ['--launcher', 'pytorch'] if launcher else [])
        losses, seconds, metrics, peak = read_log(self.work / 'experiments' / name)
        problem = None
        if code != 0:
            last = [line for line in output.strip().splitlines() if line.strip()]
            problem = f'exit {code}: {last[-1][:160] if last else "no output"}'
        elif not losses or not all(math.isfinite(v) for v in losses.values()):
            problem = f'losses {losses or "not logged"}'
        elif not math.isfinite(metrics.get('psnr', math.nan)):
            problem = f'validation {metrics or "not logged"}'
        loss_name = next((k for k in ('l_total', 'l_pix') if k in losses), None)
        self.rows.append({'check': f'{family} [{mode}]', 'precision': precision, 'result': problem or 'ok',
                          'loss': f'{loss_name} {losses[loss_name]:.4g}' if loss_name else '',
                          'psnr': f"{metrics['psnr']:.2f}" if 'psnr' in metrics else '',
                          'ms/iter': f'{seconds * 1000:.0f}' if seconds is not None else '',
                          'peak MiB': str(peak) if peak is not None else '', 'wall s': f'{wall:.0f}'})
        print(self.format_row(self.rows[-1]), flush=True)

    def resume(self, family='SRModel + SPLoss', precision='float32', num_gpu=1, env=None):
        """The same run uninterrupted and stopped half-way then resumed, deterministic: identical weights?"""
        import torch

        iters, half = self.args.iters, max(self.args.iters // 2, 1)
        finals = {}
        for kind in ('whole', 'resumed'):
            name = run_name(family, precision, f'resume {kind}')
            shutil.rmtree(self.work / 'experiments' / name, ignore_errors=True)
            opt = check_options(family, precision, '1 GPU', iters, num_gpu, name, save_every=half)
            opt['train']['deterministic'] = True
            parts = [(opt, [])]
            if kind == 'resumed':
                first = copy.deepcopy(opt)
                first['train']['total_iter'] = half
                parts = [(first, []), (opt, ['--auto_resume'])]
            for part, extra in parts:
                code, output, _ = self.train(part, env=env, extra=extra)
                if code != 0:
                    self.add_resume_row(family, precision, f'{kind} run: exit {code}: {output.strip()[-160:]}')
                    return
            logs = '\n'.join(p.read_text() for p in (self.work / 'experiments' / name).glob('train_*.log'))
            if kind == 'resumed' and f'Resuming training from iter: {half}.' not in logs:
                self.add_resume_row(family, precision, f'FAILED: the second part did not resume from iteration {half}')
                return
            finals[kind] = torch.load(self.work / 'experiments' / name / 'models' / 'net_g_latest.pth',
                                      map_location='cpu', weights_only=True)['params']
        differences = [float((finals['whole'][k].double() - finals['resumed'][k].double()).abs().max())
                       for k in finals['whole']]
        worst = max(differences)
        self.add_resume_row(family, precision, 'ok: bit-identical' if worst == 0 else
                            f'DIFFERS: max |difference| {worst:.3g} over {len(differences)} tensors')

    def add_resume_row(self, family, precision, result):
        self.rows.append({'check': f'{family} [resume at {max(self.args.iters // 2, 1)} of {self.args.iters}, '
                                   'deterministic]', 'precision': precision, 'result': result, 'loss': '', 'psnr': '',
                          'ms/iter': '', 'peak MiB': '', 'wall s': ''})
        print(self.format_row(self.rows[-1]), flush=True)

    @staticmethod
    def format_row(row):
        return '| ' + ' | '.join(row.values()) + ' |'

    def table(self):
        header = list(self.rows[0]) if self.rows else []
        return '\n'.join(['| ' + ' | '.join(header) + ' |', '|' + ' --- |' * len(header)] +
                         [self.format_row(row) for row in self.rows])


def describe_machine(device):
    import torch

    if device != 'cuda':
        return f'CPU ({os.cpu_count()} cores), torch {torch.__version__}'
    names = [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())]
    return (f"{len(names)} x {', '.join(sorted(set(names)))}, CUDA {torch.version.cuda}, cuDNN "
            f'{torch.backends.cudnn.version()}, torch {torch.__version__}')


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('--iters', type=int, default=20, help='iterations per check (default: 20)')
    parser.add_argument('--out', default='gpu_check.md', help='the table, as Markdown (default: gpu_check.md)')
    parser.add_argument('--work', default='experiments_gpu_check', help='data, option files and runs go here')
    parser.add_argument('--device', choices=['cuda', 'cpu'], default='cuda',
                        help='cpu: the same checks on the CPU (a dry run of this script)')
    parser.add_argument('--families', nargs='+', choices=list(FAMILIES), default=list(FAMILIES))
    parser.add_argument('--precisions', nargs='+', choices=PRECISIONS, default=list(PRECISIONS))
    parser.add_argument('--no-benchmark', action='store_true', help="skip the benchmark's rows")
    args = parser.parse_args(argv)

    import torch

    if args.device == 'cuda' and not torch.cuda.is_available():
        print('gpu_check: no CUDA device is visible (torch.cuda.is_available() is False); this script checks the GPU '
              'path: run it on a GPU machine, or with --device cpu for a dry run', file=sys.stderr)
        return 1
    if 'UDLModel udl' in args.families and 'UDLModel esu' not in args.families:
        parser.error("--families: 'UDLModel udl' trains on the estimator of 'UDLModel esu'; name both")
    started = time.time()
    checker = Checker(args)
    checker.work.mkdir(parents=True, exist_ok=True)
    if not (checker.work / 'datasets' / 'demo').is_dir():
        print('building the demo data ...', flush=True)
        subprocess.run([sys.executable, str(ROOT / 'scripts' / 'make_demo_data.py'), '--out',
                        str(checker.work / 'datasets' / 'demo')], check=True, capture_output=True)
    gpus = torch.cuda.device_count() if args.device == 'cuda' else 0
    one_gpu = {}
    if args.device == 'cuda':
        first = os.environ.get('CUDA_VISIBLE_DEVICES', '0').split(',')[0]
        one_gpu = {'CUDA_VISIBLE_DEVICES': first}
    machine = describe_machine(args.device)
    print(f'gpu_check on {machine}: {args.iters} iterations per check', flush=True)
    single = '1 GPU' if args.device == 'cuda' else 'CPU'
    for family in args.families:
        for precision in args.precisions:
            checker.check(family, precision, single, 1 if gpus else 0, env=one_gpu)
    skipped = []
    if gpus >= 2:
        for family in args.families:
            for precision in [p for p in ('float32', 'bfloat16') if p in args.precisions]:
                checker.check(family, precision, f'DataParallel {gpus} GPUs', gpus)
        torchrun = [str(Path(sys.executable).parent / 'torchrun'), '--nproc_per_node=2', f'--master_port={free_port()}']
        for family in args.families:
            checker.check(family, 'float32', 'torchrun NCCL 2 processes', 'auto', launcher=torchrun)
    else:
        skipped.append(f'DataParallel and 2-process torchrun (NCCL): {gpus} GPU{"s" if gpus != 1 else ""} visible, '
                       'they need 2+')
    checker.resume(num_gpu=1 if gpus else 0, env=one_gpu)

    benchmark = ''
    if args.device == 'cuda' and not args.no_benchmark:
        page = checker.work / 'benchmark.md'
        result = subprocess.run([sys.executable, str(ROOT / 'scripts' / 'benchmark_training_step.py'), '--device',
                                 'cuda', '--repeats', '5', '--no-losses', '--no-rcan', '--precisions', *PRECISIONS,
                                 '--markdown', str(page)], cwd=ROOT, env=dict(os.environ, **one_gpu),
                                capture_output=True, text=True)
        benchmark = (page.read_text() if result.returncode == 0 and page.exists() else
                     f'benchmark failed (exit {result.returncode}): {result.stderr.strip()[-300:]}')
    failed = [row for row in checker.rows if row['result'] != 'ok' and not row['result'].startswith('ok:')]
    report = [f'# gpu_check: {machine}', '', f'{time.strftime("%Y-%m-%d %H:%M")}, {args.iters} iterations per check, '
              f'{time.time() - started:.0f} s in all; {len(checker.rows) - len(failed)} of {len(checker.rows)} '
              'checks passed.', '', checker.table()]
    report += [''] + [f'Skipped: {s}.' for s in skipped] if skipped else []
    if benchmark:
        report += ['', '## scripts/benchmark_training_step.py on this machine', '', benchmark]
    Path(args.out).write_text('\n'.join(report) + '\n')
    print('\n'.join(report[:5]) + f'\n\nwritten to {args.out}')
    return 1 if failed else 0


if __name__ == '__main__':
    sys.exit(main())
