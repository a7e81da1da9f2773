"""Benchmark: steps of their own forked by the step launcher against a fresh ``python`` per step.

    .venv/bin/python bench/fork_steps.py [SPEC] [--rounds N] [--real-dp]

Each round runs ``lamflow submit SPEC --no-cache`` twice on the same data, once with the step launcher
(``LAMFLOW_FORK_STEPS=1``, the default) and once without (``LAMFLOW_FORK_STEPS=0``); who goes first
alternates. By default every ``dp`` call goes to the fake ``dp`` of the test suite (tests/fake_dp.py), so
that what is measured is the orchestration a step carries, not DeePMD-kit; ``--real-dp`` runs DeePMD-kit.
Prints (and writes bench/results/fork_steps.json) per round the wall times and their ratio (forked /
fresh), and the median duration of the steps that run in a process of their own (not in a step group).
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
sys.path.insert(0, str(HERE))

from local_overhead import submit  # noqa: E402


def run(spec: Path, work: Path, fork: bool, real_dp: bool) -> tuple[float, list[float]]:
    env = {**os.environ, "LAMFLOW_FORK_STEPS": "1" if fork else "0", "LAMFLOW_REPORT": "0"}
    env["LAMFLOW_STORE"] = str(work / "store")
    if not real_dp:
        env["LAMFLOW_DP"] = f"{sys.executable} {FAKE_DP}"
    # exit 4: a transfer gate failed (the fake dp learns nothing)
    wall, summary = submit(spec, work, env=env, ok=(0, 4))
    own = [r["duration_s"] for r in summary["steps"].values() if r["group"] is None and r["duration_s"]]
    return wall, own


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("spec", nargs="?", default=str(REPO / "examples" / "transfer.yaml"))
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--real-dp", action="store_true")
    args = parser.parse_args()
    spec = Path(args.spec).resolve()
    rounds = []
    for i in range(args.rounds):
        order = (True, False) if i % 2 == 0 else (False, True)
        measured = {}
        for fork in order:
            with tempfile.TemporaryDirectory(prefix="lamflow-bench-") as tmp:
                measured[fork] = run(spec, Path(tmp), fork, args.real_dp)
        (fork_wall, fork_steps), (fresh_wall, fresh_steps) = measured[True], measured[False]
        row = {
            "order": ["forked" if f else "fresh" for f in order],
            "forked_wall_s": round(fork_wall, 2),
            "fresh_wall_s": round(fresh_wall, 2),
            "ratio": round(fork_wall / fresh_wall, 3),
            "own_process_steps": len(fork_steps),
            "forked_step_median_s": round(statistics.median(fork_steps), 3),
            "fresh_step_median_s": round(statistics.median(fresh_steps), 3),
        }
        rounds.append(row)
        print(json.dumps(row), flush=True)
    out = HERE / "results" / "fork_steps.json"
    out.parent.mkdir(exist_ok=True)
    out.write_text(
        json.dumps({"spec": str(spec), "real_dp": args.real_dp, "rounds": rounds}, indent=2) + "\n"
    )


if __name__ == "__main__":
    main()
