#!/usr/bin/env bash
# Set everything up (idempotent) and run the demo pipeline on the bundled data with the local engine.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
bash "$ROOT/scripts/bootstrap.sh"
cd "$ROOT"
exec "${LAMFLOW_VENV:-$ROOT/.venv}/bin/lamflow" submit examples/demo.yaml "$@"
