"""Re-run chosen mutants of a mutation workspace against the tests as they are now, in one process.

    cd WORKSPACE/mutants && python /path/to/scripts/mutation_recheck.py [TESTS...] < names.txt

``scripts/mutation_test.sh`` lets mutmut judge every mutant; this script re-judges a list of them (one name
per line on stdin, e.g. the survivors and timeouts of ``WORKSPACE/results.txt``): for each it selects the
mutant (mutmut's trampoline reads ``MUTANT_UNDER_TEST`` at every call), clears every ``functools.lru_cache``
(a cached value computed under one mutant must not serve the next), runs ``pytest -x -m "not slow"`` on
TESTS and prints ``NAME: killed`` or ``NAME: survived``. A mutant whose tests run past 120 s counts as
killed (a loop that never ends), as mutmut counts its timeouts. Without TESTS, each mutant runs the tests
that mutmut recorded as reaching its function (``mutmut-stats.json``, written when mutmut last ran).

Two uses: after tests are added, to see which survivors they kill without rerunning mutmut (which keeps a
mutant's result until its function changes), and to settle mutmut's timeouts, which on this machine include
mutants whose tests fail at once when run alone (a forked worker that hangs after the failure).
"""
import functools
import gc
import json
import os
import signal
import sys

sys.path.insert(0, os.getcwd())  # the mutated copy in WORKSPACE/mutants, as mutmut runs it

import pytest  # noqa: E402

PYTEST_ARGS = ['-x', '-q', '-p', 'no:cacheprovider', '-p', 'no:warnings', '--no-header', '-m', 'not slow']
TIME_LIMIT_S = 120


class TimeLimit(Exception):
    pass


def run_tests(tests):
    signal.alarm(TIME_LIMIT_S)
    try:
        return pytest.main(PYTEST_ARGS + tests)
    except TimeLimit:
        return 'time limit'
    finally:
        signal.alarm(0)


def main():
    def on_alarm(*_):
        raise TimeLimit()

    signal.signal(signal.SIGALRM, on_alarm)
    tests = sys.argv[1:]
    names = [line.split(':')[0].strip() for line in sys.stdin if line.strip()]
    with open('mutmut-stats.json') as f:
        reaching = json.load(f)['tests_by_mangled_function_name']

    def tests_of(name):
        return tests or sorted(reaching.get(name.rsplit('__mutmut_', 1)[0], []))

    os.environ.pop('MUTANT_UNDER_TEST', None)
    clean = run_tests(tests or sorted({t for name in names for t in tests_of(name)}))
    if clean != 0:
        raise SystemExit(f'the tests fail without a mutant (exit {clean}): nothing to judge')
    for name in names:
        if not tests_of(name):
            print(f'{name}: no tests', file=sys.stderr, flush=True)
            continue
        for obj in gc.get_objects():
            if type(obj) is functools._lru_cache_wrapper:
                obj.cache_clear()
        os.environ['MUTANT_UNDER_TEST'] = name
        outcome = run_tests(tests_of(name))
        print(f'{name}: {"survived" if outcome == 0 else "killed"}', file=sys.stderr, flush=True)


if __name__ == '__main__':
    main()
