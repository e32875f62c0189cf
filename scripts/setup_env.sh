#!/usr/bin/env bash
# Creates (or reuses) .venv/ at the repository root and installs losses_plugin with its
# dependencies. Safe to run repeatedly: a stamp records what was installed and the install
# is redone only when setup.py or this script changes. Sourced by demo.sh and test.sh.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="$ROOT/.venv"
PY="$VENV/bin/python"
STAMP="$VENV/.losses_plugin_installed"
want="$(cat "$ROOT/setup.py" "$ROOT/scripts/setup_env.sh" | sha256sum | cut -d' ' -f1)"

if [ -f "$STAMP" ] && [ "$(cat "$STAMP")" = "$want" ] && "$PY" -c 'import losses_plugin' 2>/dev/null; then
  return 0 2>/dev/null || exit 0
fi

echo "[setup] preparing $VENV (first run takes a few minutes)"
[ -x "$PY" ] || python3 -m venv "$VENV"
pip_install() { "$PY" -m pip install --disable-pip-version-check "$@"; }

# torch first: BasicSR's setup.py imports it, so BasicSR is built against the installed torch
# (no build isolation). The pins are builds that exist for this platform (see README).
case "$(uname -m)" in
  aarch64|arm64) pip_install 'torch==2.9.1' 'torchvision==0.24.1' ;;
  *) pip_install 'torch==2.14.1' 'torchvision==0.29.1' ;;
esac
pip_install --no-build-isolation 'basicsr==1.4.2'
pip_install --no-build-isolation -e "$ROOT[test]"
# A real BasicSR project for tests/test_unmodified_projects.py; it needs only basicsr (its other
# requirements, facexlib and gfpgan, are for its face-enhancement inference script).
pip_install --no-deps 'realesrgan==0.3.0'

# Editable installs skip data_files, so place the start-up hook that lets a plain
# `import basicsr` work on current torchvision and resolves our registry names on their first
# lookup (wheels of this package install it themselves).
site="$("$PY" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')"
cp "$ROOT/losses_plugin_shim.pth" "$site/"

"$PY" -c 'import losses_plugin, basicsr; print("[setup] basicsr", basicsr.__version__, "ready")'
echo "$want" > "$STAMP"
