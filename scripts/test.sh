#!/usr/bin/env bash
# Set everything up (idempotent) and run the whole test suite, the slow real-DeePMD-kit tests included.
# Extra arguments go to pytest, e.g. `bash scripts/test.sh -m "not slow"`.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
bash "$ROOT/scripts/bootstrap.sh"
cd "$ROOT"
"${LAMFLOW_VENV:-$ROOT/.venv}/bin/dp" --pt -h | head -n 3
exec "${LAMFLOW_VENV:-$ROOT/.venv}/bin/python" -m pytest "$@"
