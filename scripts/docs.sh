#!/usr/bin/env bash
# Builds the documentation site into site/ with mkdocs in strict mode: a broken link or anchor, or a
# docstring whose parameters do not match its signature, fails the build. Sets up .venv/ if needed and
# installs the pinned documentation tools (docs/requirements.txt) into it when they are missing.
# `bash scripts/docs.sh serve` serves the site at http://127.0.0.1:8000 instead (live reload).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
source "$ROOT/scripts/setup_env.sh"
cd "$ROOT"
PY="$ROOT/.venv/bin/python"
export NO_MKDOCS_2_WARNING=1  # material's banner about its successor
REQS="$ROOT/docs/requirements.txt"
STAMP="$ROOT/.venv/.docs_tools_installed"
want="$(sha256sum "$REQS" | cut -d' ' -f1)"
if [ ! -f "$STAMP" ] || [ "$(cat "$STAMP")" != "$want" ] || ! "$PY" -c 'import mkdocs, mkdocstrings_handlers.python, material' 2>/dev/null; then
  echo "[docs] installing the documentation tools into .venv"
  "$PY" -m pip install --disable-pip-version-check -q -r "$REQS"
  echo "$want" > "$STAMP"
fi

# The architectures live in archs/ and are installed as losses_plugin.archs (setup.py package_dir). The API
# reference reads the sources statically (griffe), so it gets the installed layout: a copy of the package
# with archs/ inside it, in build/docs_api/ (mkdocs.yml's mkdocstrings `paths`).
STAGE="$ROOT/build/docs_api"
rm -rf "$STAGE"
mkdir -p "$STAGE"
cp -r "$ROOT/losses_plugin" "$STAGE/losses_plugin"
cp -r "$ROOT/archs" "$STAGE/losses_plugin/archs"
find "$STAGE" -name __pycache__ -prune -exec rm -rf {} +
# The docstrings cite other objects with Sphinx roles (:class:`OptionError`, :func:`losses_plugin.x.f`), which
# mkdocstrings shows as typed. In the staged copy only, a role naming a full path becomes a link to that entry of
# the reference (autorefs; an unknown path fails the strict build), any other role plain code.
"$PY" - "$STAGE" <<'PYTHON'
import pathlib, re, sys
ROLE = re.compile(r':(?:class|func|meth|mod|data|attr|exc|obj):`(~?)([\w.]+)`')
def markdown(m):
    tilde, target = m.groups()
    shown = target.rsplit('.', 1)[-1] if tilde else target
    return f'[`{shown}`][{target}]' if target.startswith('losses_plugin.') else f'`{shown}`'
for path in pathlib.Path(sys.argv[1]).rglob('*.py'):
    text = path.read_text()
    if ROLE.search(text):
        path.write_text(ROLE.sub(markdown, text))
PYTHON

if [ "${1:-}" = serve ]; then
  exec "$PY" -m mkdocs serve
fi
exec "$PY" -m mkdocs build --strict --site-dir "$ROOT/site" "$@"
