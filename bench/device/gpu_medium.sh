#!/usr/bin/env bash
# Training speed of a DeePMD-kit-sized model through lamflow: dpa2-medium (DeePMD-kit's recommended DPA-2)
# pretrained on the bundled water frames for 100 steps, on the GPU and then with the GPU hidden. Reads
# DeePMD-kit's own "batch N: total wall time" lines from each train.log. Set-up as in gpu_demo.sh.
#   bash bench/device/gpu_medium.sh OUTDIR
set -uo pipefail
OUT_DIR="${1:?usage: gpu_medium.sh OUTDIR}"
mkdir -p "$OUT_DIR"
if [ -d .whl ] && ! python3 -c "import deepmd, lamflow.workflows" 2>/dev/null; then
    python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir $(ls .whl/*.whl | grep -v rclone) 2>&1 | grep -v -i warning | tail -3
    python3 -m pip install -q --no-index --no-deps --no-build-isolation -e . 2>&1 | grep -v -i warning | tail -3
fi
SPEC=/tmp/gpu-medium.yaml
cat > "$SPEC" <<YAML
version: 1
name: gpu-medium
datasets:
  water: {path: $PWD/examples/data/water/train}
model:
  preset: dpa2-medium
stages:
  pretrain:
    heads:
      water: {datasets: [water]}
    training: {steps: 100, disp_freq: 10}
YAML
export LAMFLOW_STORE=/tmp/lamflow-store PYTHONUNBUFFERED=1
for run in gpu:0 cpu:; do
    name=${run%%:*}; visible=${run#*:}
    rm -rf "/tmp/medium-$name"
    CUDA_VISIBLE_DEVICES=$visible timeout "${LIMIT:-200}" lamflow submit "$SPEC" --run-dir "/tmp/medium-$name" --no-cache > "$OUT_DIR/medium-$name.log" 2>&1
    echo "$name: exit $?"
    log=$(ls /tmp/medium-$name/steps/pretrain/workdir/work/train.log 2>/dev/null)
    [ -n "$log" ] && grep -E "Computing Device|Device Name|total wall time|Num Intra" "$log" | tee "$OUT_DIR/medium-$name-times.txt"
done
