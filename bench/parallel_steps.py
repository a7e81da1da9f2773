"""Benchmark: the local engine's scheduler (independent steps at once, each on cores of its own) against one
step at a time.

    .venv/bin/python bench/parallel_steps.py [SPEC] [--rounds N] [--fake-dp]

Each round runs ``lamflow submit SPEC --no-cache`` twice on the same data: once with the defaults (as many
steps at once as the GPUs and cores allow, engines/machine.py) and once with ``LAMFLOW_LOCAL_WORKERS=1``
(one step at a time, each training step with every core: the engine before issue 27); who goes first
alternates. Real DeePMD-kit by default (``--fake-dp``: the test suite's fake, to measure orchestration
alone). Prints (and writes bench/results/parallel_steps.json) per round both wall times, their ratio
(scheduler / one at a time), the most steps that held slots at the same moment, and the median wall time of
a training step either way.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
FAKE_DP = REPO / "tests" / "fake_dp.py"
TRAINING_OPS = ("pretrain", "finetune", "scratch", "train-student")
sys.path.insert(0, str(HERE))

from local_overhead import submit  # noqa: E402


def most_at_once(run_dir: Path) -> int:
    """The most steps that held their slots at one moment (from the grants' taken/released times)."""
    events = []
    for path in (run_dir / "slots" / "granted").glob("*.json"):
        grant = json.loads(path.read_text())
        events += [(grant["granted_at"], 1), (grant["released_at"], -1)]
    now = best = 0
    for _, change in sorted(events):
        now += change
        best = max(best, now)
    return best


def run(spec: Path, work: Path, serial: bool, fake_dp: bool) -> dict:
    env = {**os.environ, "LAMFLOW_REPORT": "0", "LAMFLOW_STORE": str(work / "store")}
    env.pop("LAMFLOW_LOCAL_WORKERS", None)
    if serial:
        env["LAMFLOW_LOCAL_WORKERS"] = "1"
    if fake_dp:
        env["LAMFLOW_DP"] = f"{sys.executable} {FAKE_DP}"
    wall, summary = submit(spec, work, env=env, ok=(0, 4))  # 4: a transfer gate failed
    trainings = [r for r in summary["steps"].values() if r["op"] in TRAINING_OPS and r["duration_s"]]
    return {
        "wall_s": round(wall, 1),
        "at_once": most_at_once(work / "run"),
        "training_median_s": round(statistics.median(r["duration_s"] for r in trainings), 1),
        "cores_per_training": sorted({r["ran_on"]["cores"] for r in trainings if r.get("ran_on")}),
        "status": summary["status"],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("spec", nargs="?", default=str(REPO / "examples" / "transfer.yaml"))
    parser.add_argument("--rounds", type=int, default=1)
    parser.add_argument("--fake-dp", action="store_true")
    parser.add_argument("--serial-first", action="store_true", help="Start round 1 with one at a time.")
    args = parser.parse_args()
    spec = Path(args.spec).resolve()
    rounds = []
    for i in range(args.rounds):
        order = (False, True) if (i + args.serial_first) % 2 == 0 else (True, False)
        measured = {}
        for serial in order:
            with tempfile.TemporaryDirectory(prefix="lamflow-bench-") as tmp:
                measured[serial] = run(spec, Path(tmp), serial, args.fake_dp)
        row = {
            "order": ["one at a time" if s else "scheduler" for s in order],
            "scheduler": measured[False],
            "one_at_a_time": measured[True],
            "ratio": round(measured[False]["wall_s"] / measured[True]["wall_s"], 3),
        }
        rounds.append(row)
        print(json.dumps(row), flush=True)
    out = HERE / "results" / "parallel_steps.json"
    out.parent.mkdir(exist_ok=True)
    record = {
        "spec": str(spec),
        "fake_dp": args.fake_dp,
        "cores": len(os.sched_getaffinity(0)),
        "rounds": rounds,
    }
    out.write_text(json.dumps(record, indent=2) + "\n")


if __name__ == "__main__":
    main()
