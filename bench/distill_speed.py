"""Benchmark: the compressed student against the DPA-2 teacher it was distilled from (real DeePMD-kit).

    .venv/bin/python bench/distill_speed.py [--presets dpa2-small,dpa2-medium]

Runs `lamflow submit` on bench/distill_speed.yaml once per teacher preset (DeePMD-kit's DPA-2 "small" and
the "medium" it recommends; the student is always se_e2_a at DeePMD-kit's example size) and reads the
evaluation step, which times teacher, student and compressed student in one process on the same frames
with the same thread count (warm-up passes excluded). Prints and writes bench/results/distill_speed.json:
per teacher, µs/atom of each model, the compressed student's speed-up over the teacher (goal >= 10), its
force RMSE vs the teacher and vs DFT, and the teacher's MD throughput (steps/s).
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


def run(preset: str, steps: int) -> dict:
    """One bench run with the teacher architecture ``preset`` pretrained for ``steps`` steps."""
    import yaml

    spec = yaml.safe_load((HERE / "distill_speed.yaml").read_text())
    spec["model"]["preset"] = preset
    spec["stages"]["pretrain"]["training"]["steps"] = steps
    for dataset in spec["datasets"].values():  # the copy lives elsewhere: absolute data paths
        dataset["path"] = str((HERE / dataset["path"]).resolve())
    lamflow = Path(sys.executable).with_name("lamflow")
    work = Path(tempfile.mkdtemp(prefix="lamflow-distill-speed-"))
    spec_file = work / "spec.yaml"
    spec_file.write_text(yaml.safe_dump(spec, sort_keys=False))
    started = time.monotonic()
    result = subprocess.run(
        [str(lamflow), "submit", str(spec_file), "--run-dir", str(work / "run"), "--output", "json"],
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
    return {
        "teacher_preset": preset,
        "teacher_pretrain_steps": steps,
        "wall_s": round(wall, 1),
        "natoms": explore[0]["natoms"],
        "us_per_atom": {r: round(rows[r]["metrics"]["us_per_atom"], 1) for r in rows},
        "speedup_compressed_vs_teacher": round(compressed["speedup_vs_teacher"], 2),
        "speedup_student_vs_teacher": round(student["speedup_vs_teacher"], 2),
        "force_rmse_vs_teacher": {
            r: round(rows[r]["metrics"]["force_rmse_vs_teacher"], 4) for r in ("student", "compressed")
        },
        "force_rmse_vs_dft": {r: round(rows[r]["metrics"]["force_rmse"], 4) for r in rows},
        "energy_rmse_per_atom_vs_dft": {
            r: round(rows[r]["metrics"]["energy_rmse_per_atom"], 5) for r in rows
        },
        "teacher_md_steps_per_s": [e["steps_per_s"] for e in explore],
        "models": {r: rows[r]["model"] for r in rows},
    }


# pretraining steps per teacher preset: speed does not depend on them; the medium model trains ~10x slower
STEPS = {"dpa2-tiny": 60, "dpa2-small": 60, "dpa2-medium": 20}


def main() -> None:
    presets = ["dpa2-small", "dpa2-medium"]
    if len(sys.argv) > 2 and sys.argv[1] == "--presets":
        presets = sys.argv[2].split(",")
    results = []
    for preset in presets:
        results.append(run(preset, STEPS.get(preset, 20)))
        r = results[-1]
        print(json.dumps(r, indent=2))
        print(
            f"{preset} teacher: compressed student {r['speedup_compressed_vs_teacher']}x faster (goal >= 10)"
        )
    (HERE / "results").mkdir(exist_ok=True)
    (HERE / "results" / "distill_speed.json").write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()
