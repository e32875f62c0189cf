#!/usr/bin/env bash
# Mutation testing of one package with mutmut (see docs/mutation.md).
#
#   bash scripts/mutation_test.sh PACKAGE [REV]
#
# PACKAGE: losses | metrics | data | models | archs | trainer (models: every model but the torchrun-only
# sharded validation; trainer: train, resume, rng_state, checkpoint_files, checkpoint_sets, compat). REV: a git revision to test (default: the
# working tree as it is, tracked and untracked-but-not-ignored files).
#
# Never touches the repository: it builds a scratch workspace ($MUTATION_WORKDIR/PACKAGE, default
# /tmp/losses_plugin-mutation/PACKAGE) holding losses_plugin/ with archs/ copied to
# losses_plugin/archs (where the installed package has it), tests/, options/, scripts/, pytest.ini
# and a setup.cfg whose [mutmut] section is the repository's with this package's source_paths and
# tests. mutmut writes its mutants and results under WORKSPACE/mutants/ and puts that folder first
# on sys.path, so the tests import the mutated copy, not the editable install.
# One worker (MUTATION_CHILDREN: more, on a machine with idle cores), one OpenMP thread, nice $MUTATION_NICE (default 5): the machine is shared, but mutmut also
# stops a mutant's tests after half its CPU-time limit in wall time, so a starved worker (nice 19 beside
# training runs) turns slow tests into timeouts. Mutants already tested in a
# previous run of the same workspace keep their results; MUTATION_FRESH=1 starts over.
# MUTATION_SKIP: more files (paths as in the workspace, space-separated) not to mutate, e.g. the
# published architectures of archs/ to mutate only the methods' own networks first.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
PACKAGE="${1:?usage: mutation_test.sh losses|metrics|data|models|archs|trainer [REV]}"
REV="${2:-}"
MUTMUT="${MUTMUT:-$ROOT/.venv/bin/mutmut}"
WORK="${MUTATION_WORKDIR:-/tmp/losses_plugin-mutation}/$PACKAGE"
NICE="${MUTATION_NICE:-5}"

case "$PACKAGE" in
  losses)  SOURCE=losses_plugin/losses;  TESTS="tests/losses" ;;
  metrics) SOURCE=losses_plugin/metrics; TESTS="tests/metrics" ;;
  data)    SOURCE=losses_plugin/data;    TESTS="tests/data tests/test_deterministic_sampling.py" ;;
  # sharded_validation.py is reached only by the torchrun tests (marked slow): not mutated
  models)  SOURCE=losses_plugin/models;  SKIP=losses_plugin/models/sharded_validation.py
           TESTS="tests/test_amp.py tests/test_non_finite_policy.py tests/models" ;;
  archs)   SOURCE=losses_plugin/archs;   TESTS="tests/archs" ;;
  # the training loop, resuming, the generators' state, checkpoint files and sets, and the patches of BasicSR
  # that save and resume (compat.py); its tests run in this process (the CLI's subprocesses are invisible)
  trainer) SOURCE=losses_plugin
           ONLY="losses_plugin/train.py losses_plugin/resume.py losses_plugin/rng_state.py
                 losses_plugin/checkpoint_files.py losses_plugin/checkpoint_sets.py losses_plugin/compat.py"
           TESTS="tests/test_train_pipeline.py tests/test_checkpoint_sets.py tests/test_rng_state.py tests/test_amp.py
                  tests/test_non_finite_policy.py tests/test_existing_basicsr_project.py tests/test_compat.py tests/test_compat_patches.py
                  tests/test_process_group_backend.py tests/models" ;;
  *) echo "unknown package: $PACKAGE (losses|metrics|data|models|archs|trainer)" >&2; exit 2 ;;
esac

[ "${MUTATION_FRESH:-0}" = 1 ] && rm -rf "$WORK"
mkdir -p "$WORK"
# refresh the sources (mutmut re-mutates a file whose copy is older than its source)
rm -rf "$WORK/losses_plugin" "$WORK/tests" "$WORK/options" "$WORK/scripts"
if [ -n "$REV" ]; then
  git -C "$ROOT" archive "$REV" losses_plugin archs tests options scripts pytest.ini setup.cfg | tar -x -C "$WORK"
else
  (cd "$ROOT" && git ls-files -z -c -o --exclude-standard -- losses_plugin archs tests options scripts pytest.ini setup.cfg \
     | tar --null --ignore-failed-read -T - -cf - 2>/dev/null) | tar -x -C "$WORK"
fi
rm -rf "$WORK/losses_plugin/archs"
mv "$WORK/archs" "$WORK/losses_plugin/archs"

SKIP="${SKIP:-} ${MUTATION_SKIP:-}"
"$ROOT/.venv/bin/python" - "$WORK/setup.cfg" "$SOURCE" "$TESTS" "$SKIP" "${ONLY:-}" <<'EOF'
import configparser, sys
path, source, tests, skip, only = sys.argv[1:]
cfg = configparser.ConfigParser()
cfg.read(path)
cfg['mutmut']['source_paths'] = source
if skip.split():
    cfg['mutmut']['do_not_mutate'] = '\n' + '\n'.join(skip.split())
if only.split():
    cfg['mutmut']['only_mutate'] = '\n' + '\n'.join(only.split())
cfg['mutmut']['pytest_add_cli_args_test_selection'] = '\n' + '\n'.join(tests.split())
with open(path, 'w') as f:
    cfg.write(f)
EOF

cd "$WORK"
echo "[mutation] $PACKAGE: mutating $SOURCE, tests: $TESTS, workspace: $WORK"
export OMP_NUM_THREADS=1 MKL_NUM_THREADS=1
# the tests' demo data, built once from the unmutated sources: each mutant's tests copy it (tests/conftest.py)
# instead of building it again (8 s a mutant, most of a data mutant's time)
rm -rf "$WORK/demo_data"
"$ROOT/.venv/bin/python" "$ROOT/scripts/make_demo_data.py" --out "$WORK/demo_data/demo" > /dev/null
export LOSSES_PLUGIN_DEMO_DATA="$WORK/demo_data/demo"
status=0
nice -n "$NICE" "$MUTMUT" run --max-children "${MUTATION_CHILDREN:-1}" || status=$?
nice -n "$NICE" "$MUTMUT" results --all true > "$WORK/results.txt"
nice -n "$NICE" "$MUTMUT" export-cicd-stats >/dev/null 2>&1 || true
cat "$WORK/mutants/mutmut-cicd-stats.json" 2>/dev/null || true
echo
echo "[mutation] per-mutant results: $WORK/results.txt; a mutant's diff: (cd $WORK && $MUTMUT show NAME)"
exit "$status"
