"""Benchmark: the CLI's garbage-collector thresholds (``workflows/cli/app.py``, ``GC_THRESHOLDS``) against
Python's defaults, on ``lamflow validate SPEC`` as fresh processes, alternating, in one run.

    .venv/bin/python bench/cli_gc.py [SPEC] [--runs 12]

SPEC defaults to examples/demo.yaml. It is validated once first (the check cache it leaves under a
temporary ``LAMFLOW_CACHE_DIR`` makes the rest second validates of unchanged data, issue 25's case). The
baseline runs the same command with ``gc.set_threshold`` made a no-op before lamflow is imported.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
RUN = (
    "import sys; sys.argv = ['lamflow', 'validate', sys.argv[1]]\n"
    "from lamflow.workflows.cli.app import main; main()"
)
DEFAULTS = "import gc; gc.set_threshold = lambda *a: None\n"


def timed(code: str, spec: str, env: dict[str, str]) -> float:
    started = time.perf_counter()
    done = subprocess.run([sys.executable, "-c", code, spec], env=env, capture_output=True, text=True)
    if done.returncode != 0:
        raise SystemExit(f"validate exited with {done.returncode}: {done.stderr[-2000:]}")
    return time.perf_counter() - started


def compare(baseline: str, labels: tuple[str, str], ratio: str) -> None:
    """Validate SPEC (argument, default the demo) once to fill the check cache, then alternate, ``--runs``
    times, a fresh process that runs ``baseline`` before lamflow with one that runs lamflow as it is;
    print each one's median (``labels``: baseline first) and the ratio of the medians."""
    parser = argparse.ArgumentParser()
    parser.add_argument("spec", nargs="?", default=str(REPO / "examples" / "demo.yaml"))
    parser.add_argument("--runs", type=int, default=12)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as cache:
        env = {"HOME": os.environ.get("HOME", "/"), "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
               "LANG": "C.UTF-8", "LAMFLOW_CACHE_DIR": cache}  # fmt: skip
        timed(RUN, args.spec, env)  # the first validate fills the check cache
        before, now = [], []
        for _ in range(args.runs):
            before.append(timed(baseline + RUN, args.spec, env))
            now.append(timed(RUN, args.spec, env))
    for name, values in zip(labels, (before, now), strict=True):
        low, high = min(values), max(values)
        print(f"{name:18s} median {statistics.median(values):.3f} s (min {low:.3f}, max {high:.3f})")
    print(f"ratio ({ratio}, medians): {statistics.median(now) / statistics.median(before):.3f}")


def main() -> None:
    compare(DEFAULTS, ("Python's defaults", "GC_THRESHOLDS"), "GC_THRESHOLDS / defaults")


if __name__ == "__main__":
    main()
