#!/usr/bin/env bash
# The first thing to run on a GPU machine (at most ~10 minutes on one GPU): every model family trains on CUDA in
# float32, bfloat16 and float16, DataParallel and 2-process torchrun (NCCL) where 2+ GPUs are visible, one exact
# resume, and the benchmark's CUDA rows; one table printed and written to gpu_check.md. See scripts/gpu_check.py.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
source "$ROOT/scripts/setup_env.sh"
cd "$ROOT"
exec "$ROOT/.venv/bin/python" scripts/gpu_check.py "$@"
