#!/usr/bin/env bash
# Set up lamflow's virtual environment from nothing (idempotent; safe to re-run).
#
#   torch 2.13.0 (CPU)  ->  DeePMD-kit 3.2.0 built from the sdist against that torch
#   (the PyPI wheel is compiled for torch 2.11 and its custom ops fail to load with 2.13)
#   ->  e3nn (imported by DeePMD-kit, not declared)  ->  lamflow itself (editable, with test extras).
#
# The built DeePMD-kit wheel is cached in $LAMFLOW_WHEEL_CACHE (default ~/.cache/lamflow/wheels) and reused
# only if it passes the self-check below; otherwise it is rebuilt (~2-3 min on 2 cores).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${LAMFLOW_VENV:-$ROOT/.venv}"
PYTHON="${PYTHON:-python3}"
TORCH_VERSION="2.13.0"
DEEPMD_VERSION="3.2.0"
CACHE="${LAMFLOW_WHEEL_CACHE:-$HOME/.cache/lamflow/wheels}/deepmd-kit-$DEEPMD_VERSION-torch-$TORCH_VERSION"

log() { printf '[bootstrap] %s\n' "$*" >&2; }

if [ ! -x "$VENV/bin/python" ]; then
  log "creating virtual environment $VENV"
  "$PYTHON" -m venv "$VENV"
fi
PY="$VENV/bin/python"
# pip, with the machine's noisy "Location ... is ignored" index warnings filtered out (exit status kept).
pip_q() { "$PY" -m pip --disable-pip-version-check -q "$@" 2> >(grep -v "^WARNING: Location" >&2); }
# Installs skip byte-compiling: pip would compile all ~20,000 modules of torch, DeePMD-kit and the rest
# one by one (torch's 2,285 alone: 9.5 s on these cores); Python compiles what is imported, once, on first use.
pip_install() { pip_q install --no-compile "$@"; }

pip_q install --upgrade pip

# 1. CPU torch first: a bare 'torch' requirement would pull a multi-GB CUDA build.
if ! "$PY" -c "import torch, sys; sys.exit(torch.__version__.split('+')[0] != '$TORCH_VERSION')" 2>/dev/null; then
  log "installing torch==$TORCH_VERSION (CPU)"
  pip_install "torch==$TORCH_VERSION"
fi

deepmd_ok() {
  "$PY" - <<'PYEOF' 2>/dev/null
import importlib.metadata as md, sys
try:
    md.version("deepmd-kit")
    from deepmd.pt.cxx_op import ENABLE_CUSTOMIZED_OP
    assert ENABLE_CUSTOMIZED_OP, "DeePMD-kit custom op library did not load"
    import e3nn  # noqa: F401
except Exception as exc:  # pragma: no cover - shell helper
    print(f"deepmd check failed: {exc}", file=sys.stderr)
    sys.exit(1)
PYEOF
}

# 2. DeePMD-kit built against the installed torch (reuse the cached wheel when it works).
if ! deepmd_ok; then
  mkdir -p "$CACHE"
  wheel=$(ls "$CACHE"/deepmd_kit-"$DEEPMD_VERSION"-*.whl 2>/dev/null | head -n1 || true)
  if [ -n "$wheel" ]; then
    log "installing cached DeePMD-kit wheel $wheel"
    pip_install "$wheel" e3nn
  fi
  if ! deepmd_ok; then
    log "building DeePMD-kit $DEEPMD_VERSION from the sdist against torch $TORCH_VERSION (takes a few minutes)"
    rm -f "$CACHE"/deepmd_kit-*.whl
    pip_q install scikit-build-core cmake ninja dependency-groups hatch-fancy-pypi-readme setuptools_scm wheel \
     
    DP_ENABLE_PYTORCH=1 DP_ENABLE_TENSORFLOW=0 pip_q wheel --no-build-isolation --no-deps \
      --no-binary deepmd-kit "deepmd-kit==$DEEPMD_VERSION" -w "$CACHE"
    wheel=$(ls "$CACHE"/deepmd_kit-"$DEEPMD_VERSION"-*.whl | head -n1)
    pip_q install --force-reinstall --no-deps "$wheel"
    pip_q install "$wheel" e3nn
    deepmd_ok || { log "DeePMD-kit self-check failed after building"; exit 1; }
  fi
fi

# 3. lamflow itself (editable) with the step extras (DeePMD-kit is already there; ASE for MD; PySCF for DFT
#    labels) and test/dev.
log "installing lamflow (editable)"
pip_install -e "$ROOT[deepmd,dft,dev]"

# 4. Prove the DeePMD-kit PyTorch backend runs.
"$VENV/bin/dp" --pt -h >/dev/null
log "ok: $("$PY" -c 'import torch, deepmd; print(f"torch {torch.__version__}, deepmd-kit {deepmd.__version__}")'), dp --pt -h works"
