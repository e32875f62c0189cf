#!/usr/bin/env bash
# The demo, from a fresh clone: sets up .venv/, builds the demo data from scikit-image's
# photographs, trains a small EDSR x4 on CPU with BasicSR's trainer (a few minutes), then prints
# validation PSNR/SSIM against bicubic and writes a side-by-side PNG.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
source "$ROOT/scripts/setup_env.sh"
cd "$ROOT"
PY="$ROOT/.venv/bin/python"
OPT=options/demo/edsr_l1.yml
"$PY" scripts/make_demo_data.py
"$ROOT/.venv/bin/basicsr" train -opt "$OPT" --auto_resume
"$PY" scripts/evaluate_sr.py -opt "$OPT"
