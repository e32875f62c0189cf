"""What the start-up hook (``losses_plugin_shim.pth``) costs: ``python -c pass`` and ``python -c 'import
basicsr'``, each run a fresh process, with and without the hook, in interleaved rounds (each round runs every
variant once, in turn), medians.

The processes run in a throw-away venv that sees this environment's packages through a path line in a .pth
file (Python runs none of the .pth files there), holding a copy of ``losses_plugin_shim.py`` and, for the
variants with the hook, of ``losses_plugin_shim.pth``: as after installing our wheel, with nothing else
differing. ``import basicsr`` cannot run without the hook's torchvision part on current torchvision, so its
baseline is the hook with ``LOSSES_PLUGIN_NO_REGISTRY_HOOK=1``: the torchvision part alone, as before the
registry part existed. Usage:

    python scripts/benchmark_startup.py [--rounds 20] [--markdown docs/benchmark_startup.md]

``--markdown`` replaces the file's section "Start-up hook" (from its heading to the next ``## ``) or appends it.
"""
import argparse
import os
import shutil
import statistics
import subprocess
import sys
import sysconfig
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SECTION = '## Start-up hook'
# (name, code, the .pth present, extra environment)
VARIANTS = [
    ('python -c pass, no hook', 'pass', False, {}),
    ('python -c pass, hook', 'pass', True, {}),
    ('python -c pass, hook, registry part off', 'pass', True, {'LOSSES_PLUGIN_NO_REGISTRY_HOOK': '1'}),
    ('import basicsr, torchvision part only', 'import basicsr', True, {'LOSSES_PLUGIN_NO_REGISTRY_HOOK': '1'}),
    ('import basicsr, hook', 'import basicsr', True, {}),
]
SHIM_IMPORT = 'import losses_plugin_shim at start-up (-X importtime of the hook variant)'
# (variant, its baseline) pairs reported as a difference and a ratio
COMPARISONS = [
    ('python -c pass, hook', 'python -c pass, no hook'),
    ('python -c pass, hook, registry part off', 'python -c pass, no hook'),
    ('import basicsr, hook', 'import basicsr, torchvision part only'),
]


def make_venv(folder):
    """A venv in ``folder`` that sees this environment's packages but none of its .pth files; returns its python
    and the path its ``losses_plugin_shim.pth`` is moved between (present, absent)."""
    subprocess.run([sys.executable, '-m', 'venv', '--without-pip', str(folder)], check=True)
    python = folder / 'bin' / 'python'
    site = Path(subprocess.run([str(python), '-c', 'import sysconfig; print(sysconfig.get_paths()["purelib"])'],
                               check=True, capture_output=True, text=True).stdout.strip())
    ours = sorted({sysconfig.get_paths()['purelib'], sysconfig.get_paths()['platlib']})
    (site / 'venv_dependencies.pth').write_text('\n'.join(ours) + '\n')
    shutil.copy(REPO / 'losses_plugin_shim.py', site)
    shutil.copy(REPO / 'losses_plugin_shim.pth', site)
    # pip compiles what it installs; without the bytecode (PYTHONDONTWRITEBYTECODE) each start would compile it
    subprocess.run([str(python), '-m', 'compileall', '-q', str(site / 'losses_plugin_shim.py')], check=True)
    return python, site / 'losses_plugin_shim.pth'


def time_process(python, code, env):
    start = time.perf_counter()
    subprocess.run([str(python), '-c', code], check=True, env=env, cwd=tempfile.gettempdir())
    return time.perf_counter() - start


def shim_import_time(python, env):
    """Seconds ``python -X importtime`` reports for importing ``losses_plugin_shim`` at start-up (with what it
    imports), a figure the process start's noise does not reach."""
    err = subprocess.run([str(python), '-X', 'importtime', '-c', 'pass'], check=True, env=env, capture_output=True,
                         text=True, cwd=tempfile.gettempdir()).stderr
    line, = [line for line in err.splitlines() if line.split('|')[-1].strip() == 'losses_plugin_shim']
    return int(line.split('|')[1]) / 1e6


def measure(rounds):
    """{variant: [seconds per round]}, after one warm-up round (which also writes the bytecode caches)."""
    base_env = {k: v for k, v in os.environ.items() if k != 'LOSSES_PLUGIN_NO_REGISTRY_HOOK'}
    base_env['OMP_NUM_THREADS'] = '1'
    with tempfile.TemporaryDirectory() as folder:
        python, pth = make_venv(Path(folder) / 'venv')
        off = pth.with_name(pth.name + '.off')
        times = {name: [] for name, *_ in VARIANTS}
        times[SHIM_IMPORT] = []
        for round_index in range(rounds + 1):
            for name, code, with_hook, env in VARIANTS:
                if with_hook != pth.exists():
                    (off if with_hook else pth).rename(pth if with_hook else off)
                seconds = time_process(python, code, {**base_env, **env})
                if round_index:
                    times[name].append(seconds)
                    if name == 'python -c pass, hook':
                        times[SHIM_IMPORT].append(shim_import_time(python, {**base_env, **env}))
    return times


def table(times, rounds):
    import torch

    median = {name: statistics.median(values) for name, values in times.items()}
    lines = [f'{SECTION} (`python scripts/benchmark_startup.py --rounds {rounds}`)', '',
             f'Wall time of a fresh process, median (min-max) of {rounds} interleaved rounds after one warm-up, '
             f'Python {sys.version.split()[0]}, torch {torch.__version__}, {os.cpu_count()} cores (shared).', '',
             '| process | ms |', '| --- | ---: |']
    for name, values in times.items():
        lines.append(f'| {name} | {1000 * median[name]:.1f} ({1000 * min(values):.1f}-{1000 * max(values):.1f}) |')
    lines += ['', 'The hook\'s own share of `python -c pass` is its import (`losses_plugin_shim`, which imports nothing); '
              'the wall-time differences below are within the spread of process start-up on this machine.']
    lines += ['', '| variant | against | + ms (median) | ratio |', '| --- | --- | ---: | ---: |']
    for name, baseline in COMPARISONS:
        lines.append(f'| {name} | {baseline} | {1000 * (median[name] - median[baseline]):+.1f} | '
                     f'{median[name] / median[baseline]:.3f} |')
    return '\n'.join(lines) + '\n'


def write_section(path, text):
    """Replaces the section starting with :data:`SECTION` in ``path`` (up to the next ``## ``), or appends it."""
    page = Path(path).read_text() if Path(path).exists() else ''
    start = page.find(SECTION)
    if start < 0:
        page = page.rstrip('\n') + '\n\n' + text
    else:
        end = page.find('\n## ', start + len(SECTION))
        page = page[:start] + text + (page[end + 1:] if end >= 0 else '')
    Path(path).write_text(page)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('--rounds', type=int, default=20, help='interleaved rounds (default 20)')
    parser.add_argument('--markdown', help='write the tables into this Markdown page (its "Start-up hook" section)')
    args = parser.parse_args()
    text = table(measure(args.rounds), args.rounds)
    print(text)
    if args.markdown:
        write_section(args.markdown, text)


if __name__ == '__main__':
    main()
