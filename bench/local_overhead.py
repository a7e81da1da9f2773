"""Benchmark: the local engine's overhead over running the same `dp` commands by hand.

    .venv/bin/python bench/local_overhead.py [SPEC] [--rounds N]

Each round runs, one after the other on the same machine and data, (a) `lamflow submit SPEC` (short steps
in step groups), (b) `lamflow submit SPEC --no-group` and (c) the bash script of bench/hand_script.py
with the very same `dp` commands; who goes first rotates. Prints (and writes
bench/results/local_overhead.json) the wall times, lamflow's ratios to the script (goal <= 0.80), the
per-step overhead (lamflow's step duration minus the same step's time in the script) and how far the
test metrics of the three runs are apart.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
sys.path.insert(0, str(HERE))

from hand_script import write_script  # noqa: E402

from lamflow.ops.test import parse_test_metrics  # noqa: E402
from lamflow.workflows.api import validate  # noqa: E402


def submit(
    spec: Path,
    work: Path,
    extra: tuple[str, ...] = (),
    env: dict[str, str] | None = None,
    ok: tuple[int, ...] = (0,),
) -> tuple[float, dict]:
    """``lamflow submit SPEC --no-cache`` in ``work/run``: its wall time and its JSON summary (an exit
    status outside ``ok`` stops the benchmark)."""
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
        *extra,
    ]
    result = subprocess.run(argv, capture_output=True, text=True, env=env)
    wall = time.monotonic() - started
    if result.returncode not in ok:
        raise SystemExit(f"lamflow submit failed:\n{result.stderr[-2000:]}")
    return wall, json.loads(result.stdout)


def run_lamflow(spec: Path, work: Path, extra: tuple[str, ...] = ()) -> tuple[float, dict[str, float], dict]:
    wall, summary = submit(spec, work, extra)
    metrics = {t["step"]: t["metrics"] for t in summary["tests"]}
    return wall, {k: r["duration_s"] for k, r in summary["steps"].items()}, metrics


def run_script(spec: Path, work: Path) -> tuple[float, dict[str, float], dict]:
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
    metrics = {
        s.key: parse_test_metrics((work / "hand" / s.key / "dp.log").read_text()) for s in plan.evaluations
    }
    return wall, steps, metrics


RUNNERS = {
    "lamflow": lambda spec, work: run_lamflow(spec, work),
    "lamflow --no-group": lambda spec, work: run_lamflow(spec, work, ("--no-group",)),
    "script": run_script,
}


def _metric_gap(ours: dict, theirs: dict) -> float:
    """The largest relative difference between two runs' test metrics (0.0: identical)."""
    gaps = [0.0]
    for step, metrics in theirs.items():
        for name, value in metrics.items():
            if name in ours.get(step, {}):
                gaps.append(abs(ours[step][name] - value) / max(abs(value), 1e-12))
    return max(gaps)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("spec", nargs="?", default=str(REPO / "examples" / "demo.yaml"))
    parser.add_argument("--rounds", type=int, default=1)
    args = parser.parse_args()
    spec = Path(args.spec).resolve()
    rounds = []
    names = list(RUNNERS)
    for i in range(args.rounds):
        with tempfile.TemporaryDirectory(prefix="lamflow-bench-") as tmp:
            work = Path(tmp)
            order = names[i % 3 :] + names[: i % 3]  # who goes first rotates
            results = {}
            for name in order:
                (work / name.replace(" ", "_")).mkdir()
                results[name] = RUNNERS[name](spec, work / name.replace(" ", "_"))
                print(f"round {i + 1}: {name:20s} {results[name][0]:7.1f} s", flush=True)
            sh_wall, sh_steps, sh_metrics = results["script"]
            record: dict = {"order": order, "script_s": round(sh_wall, 1)}
            for name in ("lamflow", "lamflow --no-group"):
                wall, steps, metrics = results[name]
                overhead = {k: round(steps[k] - sh_steps[k], 2) for k in steps if k in sh_steps}
                record[name] = {
                    "wall_s": round(wall, 1), "ratio": round(wall / sh_wall, 3), "step_overhead_s": overhead,
                    "metric_gap_vs_script": _metric_gap(metrics, sh_metrics),
                }  # fmt: skip
                print(
                    f"round {i + 1}: {name:20s} ratio {wall / sh_wall:.3f}, largest relative metric gap "
                    f"from the script {record[name]['metric_gap_vs_script']:.2e}",
                    flush=True,
                )
            record["grouped_vs_ungrouped_metric_gap"] = _metric_gap(
                results["lamflow"][2], results["lamflow --no-group"][2]
            )
            rounds.append(record)
    out = HERE / "results" / "local_overhead.json"
    out.parent.mkdir(exist_ok=True)
    shown = str(spec.relative_to(REPO)) if spec.is_relative_to(REPO) else str(spec)
    out.write_text(json.dumps({"spec": shown, "rounds": rounds}, indent=2) + "\n")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
