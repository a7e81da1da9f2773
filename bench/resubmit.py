"""Benchmark: a resubmit of an unchanged spec against its first run (real DeePMD-kit), one fresh store.

    .venv/bin/python bench/resubmit.py [SPEC]

Runs `lamflow submit SPEC` twice with a new, empty LAMFLOW_STORE: the first run computes every step, the
second finds every step in the step cache. Prints and writes bench/results/resubmit.json (goal <= 0.05).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent


def main() -> None:
    spec = Path(sys.argv[1]) if len(sys.argv) > 1 else REPO / "examples" / "demo.yaml"
    lamflow = Path(sys.executable).with_name("lamflow")
    work = Path(tempfile.mkdtemp(prefix="lamflow-resubmit-"))
    env = {**os.environ, "LAMFLOW_STORE": str(work / "store")}
    walls = []
    for n in (1, 2):
        started = time.monotonic()
        result = subprocess.run(
            [str(lamflow), "submit", str(spec), "--run-dir", str(work / f"run{n}"), "--output", "json"],
            capture_output=True,
            text=True,
            env=env,
        )
        walls.append(time.monotonic() - started)
        if result.returncode != 0:
            raise SystemExit(result.stderr[-2000:])
        phases = sorted({r["phase"] for r in json.loads(result.stdout)["steps"].values()})
        print(f"run {n}: {walls[-1]:.1f} s, phases {phases}")
    out = {
        "spec": str(spec),
        "first_s": round(walls[0], 2),
        "resubmit_s": round(walls[1], 2),
        "ratio": round(walls[1] / walls[0], 4),
    }
    (HERE / "results").mkdir(exist_ok=True)
    (HERE / "results" / "resubmit.json").write_text(json.dumps(out, indent=2) + "\n")
    print(json.dumps(out))


if __name__ == "__main__":
    main()
