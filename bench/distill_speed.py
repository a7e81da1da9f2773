"""Benchmark: the compressed student against the DPA-2 teacher it was distilled from (real DeePMD-kit).

    .venv/bin/python bench/distill_speed.py [SPEC]

Runs `lamflow submit SPEC` (default bench/distill_speed.yaml: a dpa2-small teacher, an se_e2_a student)
and reads the evaluation step, which times teacher, student and compressed student in one process on the
same frames with the same thread count (warm-up passes excluded). Prints and writes
bench/results/distill_speed.json: µs/atom of each, the compressed student's speed-up over the teacher
(goal >= 10), its force RMSE vs the teacher and vs DFT, and the teacher's MD throughput (steps/s).
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


def main() -> None:
    spec = Path(sys.argv[1]) if len(sys.argv) > 1 else HERE / "distill_speed.yaml"
    lamflow = Path(sys.executable).with_name("lamflow")
    work = Path(tempfile.mkdtemp(prefix="lamflow-distill-speed-"))
    started = time.monotonic()
    result = subprocess.run(
        [str(lamflow), "submit", str(spec), "--run-dir", str(work / "run"), "--output", "json"],
        capture_output=True,
        text=True,
        env={**os.environ, "LAMFLOW_STORE": str(work / "store")},
    )
    wall = time.monotonic() - started
    if result.returncode != 0:
        raise SystemExit(result.stdout[-2000:] + result.stderr[-2000:])
    summary = json.loads(result.stdout)
    rows = {t["role"]: t for t in summary["tests"] if t["role"]}
    explore = [s["parameters"]["report"] for k, s in summary["steps"].items() if k.startswith("explore-")]
    teacher, student, compressed = (rows[r]["metrics"] for r in ("teacher", "student", "compressed"))
    out = {
        "spec": str(spec),
        "wall_s": round(wall, 1),
        "natoms": explore[0]["natoms"],
        "us_per_atom": {r: round(rows[r]["metrics"]["us_per_atom"], 1) for r in rows},
        "speedup_compressed_vs_teacher": round(compressed["speedup_vs_teacher"], 2),
        "speedup_student_vs_teacher": round(student["speedup_vs_teacher"], 2),
        "force_rmse_vs_teacher": {
            r: round(rows[r]["metrics"]["force_rmse_vs_teacher"], 4) for r in ("student", "compressed")
        },
        "force_rmse_vs_dft": {r: round(rows[r]["metrics"]["force_rmse"], 4) for r in rows},
        "energy_rmse_per_atom_vs_dft": {r: round(rows[r]["metrics"]["energy_rmse_per_atom"], 5) for r in rows},
        "teacher_md_steps_per_s": [e["steps_per_s"] for e in explore],
        "models": {r: rows[r]["model"] for r in rows},
    }
    (HERE / "results").mkdir(exist_ok=True)
    (HERE / "results" / "distill_speed.json").write_text(json.dumps(out, indent=2) + "\n")
    print(json.dumps(out, indent=2))
    print(f"compressed student {out['speedup_compressed_vs_teacher']}x faster than the teacher (goal >= 10)")


if __name__ == "__main__":
    main()
