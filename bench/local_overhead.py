"""Benchmark: the local engine's overhead over running the same `dp` commands by hand.

    .venv/bin/python bench/local_overhead.py [SPEC] [--pairs N]

Each pair runs, one after the other on the same machine and data, (a) `lamflow submit SPEC` and (b) the
bash script of bench/hand_script.py with the very same `dp` commands; the pair order alternates. Prints
(and writes bench/results/local_overhead.json) the wall times, their ratio (goal <= 1.10) and the
per-step overhead: lamflow's step duration minus the same step's time in the script.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
sys.path.insert(0, str(HERE))

from hand_script import write_script  # noqa: E402

from lamflow.workflows.api import validate  # noqa: E402


def run_lamflow(spec: Path, work: Path) -> tuple[float, dict[str, float]]:
    lamflow = Path(sys.executable).with_name("lamflow")
    started = time.monotonic()
    argv = [
        str(lamflow),
        "submit",
        str(spec),
        "--run-dir",
        str(work / "run"),
        "--output",
        "json",
        "--no-cache",
    ]
    result = subprocess.run(argv, capture_output=True, text=True)
    wall = time.monotonic() - started
    if result.returncode != 0:
        raise SystemExit(f"lamflow submit failed:\n{result.stderr[-2000:]}")
    summary = json.loads(result.stdout)
    return wall, {k: r["duration_s"] for k, r in summary["steps"].items()}


def run_script(spec: Path, work: Path) -> tuple[float, dict[str, float]]:
    _, plan = validate(spec)
    script = write_script(plan, work / "hand")
    started = time.monotonic()
    result = subprocess.run(["bash", str(script)], capture_output=True, text=True)
    wall = time.monotonic() - started
    if result.returncode != 0:
        raise SystemExit(f"hand script failed:\n{result.stdout[-2000:]}{result.stderr[-2000:]}")
    steps = {}
    for line in result.stdout.splitlines():
        if line.startswith("STEP "):
            _, key, micros = line.split()
            steps[key] = int(micros) / 1e6
    return wall, steps


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("spec", nargs="?", default=str(REPO / "examples" / "demo.yaml"))
    parser.add_argument("--pairs", type=int, default=1)
    args = parser.parse_args()
    spec = Path(args.spec).resolve()
    pairs = []
    for i in range(args.pairs):
        with tempfile.TemporaryDirectory(prefix="lamflow-bench-") as tmp:
            work = Path(tmp)
            order = ("lamflow", "script") if i % 2 == 0 else ("script", "lamflow")
            results = {}
            for name in order:
                (work / name).mkdir()
                results[name] = (run_lamflow if name == "lamflow" else run_script)(spec, work / name)
                print(f"pair {i + 1}: {name:8s} {results[name][0]:7.1f} s", flush=True)
            (lam_wall, lam_steps), (sh_wall, sh_steps) = results["lamflow"], results["script"]
            overhead = {k: round(lam_steps[k] - sh_steps[k], 2) for k in lam_steps if k in sh_steps}
            pairs.append({
                "order": order, "lamflow_s": round(lam_wall, 1), "script_s": round(sh_wall, 1),
                "ratio": round(lam_wall / sh_wall, 3), "step_overhead_s": overhead,
                "mean_step_overhead_s": round(statistics.mean(overhead.values()), 2),
            })  # fmt: skip
            ratio, step_s = pairs[-1]["ratio"], pairs[-1]["mean_step_overhead_s"]
            print(f"pair {i + 1}: ratio {ratio:.3f}, mean step overhead {step_s:.2f} s", flush=True)
    out = HERE / "results" / "local_overhead.json"
    out.parent.mkdir(exist_ok=True)
    shown = str(spec.relative_to(REPO)) if spec.is_relative_to(REPO) else str(spec)
    out.write_text(json.dumps({"spec": shown, "pairs": pairs}, indent=2) + "\n")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
