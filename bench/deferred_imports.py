"""Benchmark: packages deferred until first use (``ops/runtime/deferred.py``: ``kubernetes``, which dflow
imports whole) against importing them up front, on ``lamflow validate SPEC`` as fresh processes,
alternating, in one run.

    .venv/bin/python bench/deferred_imports.py [SPEC] [--runs 12]

SPEC defaults to examples/demo.yaml; it is validated once first, so the rest are second validates of
unchanged data (issue 25's case). The baseline imports every deferred package before lamflow, as dflow
did before, which leaves ``defer`` nothing to do.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from cli_gc import REPO, RUN, timed  # noqa: E402

UP_FRONT = "import kubernetes\n"  # ops/runtime/deferred.DEFERRED, imported as before


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("spec", nargs="?", default=str(REPO / "examples" / "demo.yaml"))
    parser.add_argument("--runs", type=int, default=12)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as cache:
        env = {"HOME": os.environ.get("HOME", "/"), "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
               "LANG": "C.UTF-8", "LAMFLOW_CACHE_DIR": cache}  # fmt: skip
        timed(RUN, args.spec, env)  # the first validate fills the check cache
        deferred, up_front = [], []
        for _ in range(args.runs):
            up_front.append(timed(UP_FRONT + RUN, args.spec, env))
            deferred.append(timed(RUN, args.spec, env))
    for name, values in (("imported up front", up_front), ("deferred", deferred)):
        low, high = min(values), max(values)
        print(f"{name:18s} median {statistics.median(values):.3f} s (min {low:.3f}, max {high:.3f})")
    ratio = statistics.median(deferred) / statistics.median(up_front)
    print(f"ratio (deferred / up front, medians): {ratio:.3f}")


if __name__ == "__main__":
    main()
