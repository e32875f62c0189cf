#!/usr/bin/env bash
# Sets up .venv/ if needed and runs the whole test suite (slow tests included).
# Extra arguments go to pytest, e.g. `bash scripts/test.sh -m "not slow"`.
# The tests run in one pytest-xdist worker per core (TEST_WORKERS overrides: a number, or 0 for none),
# each with one OpenMP thread: most of the suite's time is single-threaded (interpreter start-up of the
# CLI and torchrun subprocesses, Python), so two workers on two cores take about 2/3 of the time of one.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
source "$ROOT/scripts/setup_env.sh"
cd "$ROOT"
export OMP_NUM_THREADS="${OMP_NUM_THREADS:-1}"
exec "$ROOT/.venv/bin/python" -m pytest tests -n "${TEST_WORKERS:-auto}" --dist worksteal "$@"
