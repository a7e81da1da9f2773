#!/usr/bin/env bash
# Static checks (part of `bash scripts/test.sh`): ruff lint + format, and mypy with the pydantic plugin.
# mypy sees the installed layout (lamflow.workflows -> workflows/, lamflow.ops -> ops/) through links.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
BIN="${LAMFLOW_VENV:-$ROOT/.venv}/bin"
cd "$ROOT"
"$BIN/ruff" check .
"$BIN/ruff" format --check .
LAYOUT="$(mktemp -d)"
trap 'rm -rf "$LAYOUT"' EXIT
mkdir "$LAYOUT/lamflow"
ln -s "$ROOT/workflows" "$LAYOUT/lamflow/workflows"
ln -s "$ROOT/ops" "$LAYOUT/lamflow/ops"
(cd "$LAYOUT" && "$BIN/mypy" --config-file "$ROOT/pyproject.toml" --cache-dir "$ROOT/.mypy_cache" \
  --namespace-packages --explicit-package-bases lamflow)
