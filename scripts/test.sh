#!/usr/bin/env bash
# Set everything up (idempotent), then: static checks (scripts/lint.sh: ruff, mypy), a strict build of the
# docs site, and the test suite in two tiers:
#   1. fast tier (-m "not slow", fake dp): must cover >= 85 % of the lines in ops/ on its own;
#   2. slow tier (-m slow): the real DeePMD-kit end to end.
# Extra arguments replace both with one pytest call, e.g. `bash scripts/test.sh -m "not slow" -x`.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
# each phase's wall time, for the CI figures in docs/testing.md
phase() { printf '[test.sh] %s done at %d s\n' "$1" "$SECONDS" >&2; }
bash "$ROOT/scripts/bootstrap.sh"
phase "set-up"
cd "$ROOT"
PY="${LAMFLOW_VENV:-$ROOT/.venv}/bin/python"
if [ $# -gt 0 ]; then
  exec "$PY" -m pytest "$@"
fi
bash "$ROOT/scripts/lint.sh"
phase "lint"
# the docs site, strictly: a broken link or a missing page fails (the spec reference is generated)
NO_MKDOCS_2_WARNING=1 "$PY" -m mkdocs build --strict --quiet -f "$ROOT/mkdocs.yml" -d "$(mktemp -d)"
phase "docs"
"$PY" -m pytest -m "not slow" --durations=15 --cov=ops --cov=workflows --cov-report=term:skip-covered
"$PY" -m coverage report --include="$ROOT/ops/*" --fail-under=85
phase "fast tier"
"$PY" -m pytest -m slow --durations=15
phase "slow tier"
