"""Where a concurrent-learning run's wall time went (issue 24's goal: orchestration <= 5 % of the run).

Reads a finished run's summary.json and sums its steps' own durations by kind — training (every `dp train`
step, the pretraining included), MD, model deviation, labelling, other steps (freeze, test, select,
merge, converge, collect) — and calls the rest of the wall time orchestration: everything that is not a
step's own command (dflow, the engine's passes between iterations, staging, workers' start-up). Valid for
runs whose steps ran one at a time (LAMFLOW_LOCAL_WORKERS=1, the local engine's default before its
scheduler ran independent steps side by side: with steps at once, the sums exceed the wall time).

    .venv/bin/python bench/loop_split.py runs/<run-id>
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

KINDS = {
    "pretrain": "training", "finetune": "training", "scratch": "training", "student": "training",
    "explore-loop": "MD", "explore": "MD", "model-devi": "deviation", "label-dft": "labelling",
}  # fmt: skip


def split(run_dir: Path) -> dict[str, float]:
    summary = json.loads((run_dir / "summary.json").read_text())
    seconds: dict[str, float] = {}
    for record in summary["steps"].values():
        if record.get("duration_s") is not None and record["phase"] == "Succeeded":
            kind = KINDS.get(record["op"], "other steps")
            seconds[kind] = seconds.get(kind, 0.0) + record["duration_s"]
    wall = float(summary["wall_time_s"])
    seconds["orchestration"] = wall - sum(seconds.values())
    return {"wall": wall, **seconds}


def main() -> None:
    figures = split(Path(sys.argv[1]))
    wall = figures.pop("wall")
    print(f"wall time {wall:.1f} s")
    for kind, value in sorted(figures.items(), key=lambda kv: -kv[1]):
        print(f"  {kind:14s} {value:7.1f} s  {100 * value / wall:5.1f} %")


if __name__ == "__main__":
    main()
