#!/usr/bin/env bash
# The demo pipeline through lamflow on a GPU machine, then the same spec with the GPU hidden, for a
# side-by-side wall time. Used on a lent H100 (no network there): lamflow's dependencies and the PyPI
# DeePMD-kit wheel (built for torch 2.11, the machine's torch) travel as wheels in .whl/.
#   bash bench/device/gpu_demo.sh OUTDIR
set -uo pipefail
OUT_DIR="${1:?usage: gpu_demo.sh OUTDIR}"
mkdir -p "$OUT_DIR"
nvidia-smi -L
if [ -d .whl ]; then
    python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir $(ls .whl/*.whl | grep -v rclone) 2>&1 | grep -v -i warning | tail -3
    python3 -m pip install -q --no-index --no-deps --no-build-isolation -e . 2>&1 | grep -v -i warning | tail -3
fi
python3 -c "import torch, deepmd, lamflow.workflows; print('torch', torch.__version__, 'cuda', torch.cuda.is_available(), torch.cuda.get_device_name(0) if torch.cuda.is_available() else '')"
export LAMFLOW_STORE=/tmp/lamflow-store PYTHONUNBUFFERED=1
run() {  # NAME, then env assignments
    local name=$1; shift
    rm -rf "/tmp/$name"
    local started=$(date +%s.%N)
    env "$@" timeout 420 lamflow submit examples/demo.yaml --run-dir "/tmp/$name" --no-cache > "$OUT_DIR/$name.log" 2>&1
    local rc=$?
    echo "$name: exit $rc, $(python3 -c "print(round($(date +%s.%N) - $started, 1))") s"
    tail -25 "$OUT_DIR/$name.log"
}
run gpu-run CUDA_VISIBLE_DEVICES=0
[ "${SKIP_CPU:-0}" = 1 ] || run cpu-run CUDA_VISIBLE_DEVICES=
for name in gpu-run cpu-run; do
    [ -d "/tmp/$name" ] || continue
    python3 - "$name" "$OUT_DIR" <<'PY'
import json, sys
from pathlib import Path
name, out = sys.argv[1], Path(sys.argv[2])
summary = json.loads(Path(f"/tmp/{name}/summary.json").read_text())
steps = {k: {"phase": s["phase"], "duration_s": s["duration_s"], "device": s["parameters"].get("device")}
         for k, s in summary["steps"].items()}
(out / f"{name}-steps.json").write_text(json.dumps({"wall_time_s": summary["wall_time_s"], "status": summary["status"], "steps": steps}, indent=1))
print(name, summary["status"], summary["wall_time_s"])
for k, s in steps.items():
    if s["device"]:
        print(f"  {k}: {s['device']}, {s['duration_s']} s")
PY
done
tar czf "$OUT_DIR/runs.tgz" -C /tmp --exclude='*.pt' --exclude='*.pth' --exclude='*.npy' --exclude='*.raw' \
    gpu-run cpu-run 2>/dev/null
ls -la "$OUT_DIR"
