#!/usr/bin/env bash
# Build the step images: bash images/build.sh [cuda|cpu ...] (default: both), from any directory;
# bash images/build.sh labeler DFT_IMAGE=<image> builds the command labeler's image (Dockerfile.labeler).
# Tags lamflow-ops:<lamflow version>-<variant>; push them where your cluster pulls from and set
# LAMFLOW_IMAGE (or `lamflow render --image`). Needs Docker (or a compatible builder: DOCKER=podman).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
DOCKER="${DOCKER:-docker}"
VERSION="$(python3 -c 'import tomllib; print(tomllib.load(open("pyproject.toml", "rb"))["project"]["version"])')"
rm -rf dist && python3 -m pip wheel --no-deps --no-build-isolation . -w dist  # lamflow's own wheel
if [ "${1:-}" = labeler ]; then  # bash images/build.sh labeler DFT_IMAGE=registry/your-vasp:6.4
  dft="${2#DFT_IMAGE=}"
  [ -n "$dft" ] && [ "$dft" != "${2:-}" ] || { echo "usage: images/build.sh labeler DFT_IMAGE=<image>" >&2; exit 2; }
  "$DOCKER" build -f images/Dockerfile.labeler --build-arg "DFT_IMAGE=$dft" \
    --build-arg "LAMFLOW_VERSION=$VERSION" -t "lamflow-labeler:$VERSION" .
  exit 0
fi
variants=("$@")
[ ${#variants[@]} -gt 0 ] || variants=(cuda cpu)
for v in "${variants[@]}"; do
  "$DOCKER" build -f "images/Dockerfile.$v" --build-arg "LAMFLOW_VERSION=$VERSION" -t "lamflow-ops:$VERSION-$v" .
done
