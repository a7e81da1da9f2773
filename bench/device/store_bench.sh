#!/usr/bin/env bash
# bench/store_transfer.py on a machine with more cores than the development VM (a lent GPU machine, used
# for its 16 CPU cores: the S3 server then has cores of its own). Wheels and the water_h2o dataset
# travel in .whl2/ (no network there).
#   bash bench/device/store_bench.sh OUTDIR
set -uo pipefail
OUT_DIR="${1:?usage: store_bench.sh OUTDIR}"
mkdir -p "$OUT_DIR"
nproc
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir .whl2/*.whl 2>&1 | grep -v -i warning | tail -3
python3 -m pip install -q --no-index --no-deps --no-build-isolation -e . 2>&1 | grep -v -i warning | tail -3
export PYTHONUNBUFFERED=1
for copies in 100 1; do
    timeout 280 python3 bench/store_transfer.py .whl2/data/water_h2o --copies "$copies" --rounds 3 2>&1 | grep -v "it/s"
    cp bench/results/store_transfer-rclone-x$copies.json "$OUT_DIR/" 2>/dev/null
done
