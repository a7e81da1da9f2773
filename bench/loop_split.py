"""Where a concurrent-learning run's wall time went (issue 24's goal: orchestration <= 5 % of the run).

Reads a finished run's summary.json and sums its steps' own durations by kind — training (every `dp train`
step, the pretraining included), MD, model deviation, labelling, other steps (freeze, test, select,
merge, converge, collect) — as step-seconds: with independent steps side by side (the local engine's
default), they add up to more than the wall time, so each kind's share is of the summed step time.
Orchestration is the wall time during which no step ran at all (the union of the steps' start-to-end
intervals, subtracted from the run's wall time): dflow, the engine's passes between iterations, staging,
workers' start-up — everything that is not a step's own command.

    .venv/bin/python bench/loop_split.py runs/<run-id>
"""

from __future__ import annotations

import json
import sys
from datetime import datetime
from pathlib import Path

from lamflow.workflows.engines.loops import idle_seconds

KINDS = {
    "pretrain": "training", "finetune": "training", "scratch": "training", "student": "training",
    "explore-loop": "MD", "explore": "MD", "model-devi": "deviation", "label-dft": "labelling",
}  # fmt: skip


def _busy_seconds(intervals: list[tuple[float, float]]) -> float:
    """The length of the union of ``intervals`` (seconds during which at least one step ran): their span
    less what the engine's own :func:`idle_seconds` finds uncovered in it."""
    if not intervals:
        return 0.0
    first, last = min(start for start, _ in intervals), max(finish for _, finish in intervals)
    return last - first - idle_seconds(first, last, intervals)


def split(run_dir: Path) -> dict[str, float]:
    summary = json.loads((run_dir / "summary.json").read_text())
    seconds: dict[str, float] = {}
    intervals = []
    for record in summary["steps"].values():
        if record.get("duration_s") is not None and record["phase"] == "Succeeded":
            kind = KINDS.get(record["op"], "other steps")
            seconds[kind] = seconds.get(kind, 0.0) + record["duration_s"]
            started = datetime.fromisoformat(record["started_at"]).timestamp()
            intervals.append((started, started + record["duration_s"]))
    wall = float(summary["wall_time_s"])
    return {"wall": wall, "orchestration": wall - _busy_seconds(intervals), **seconds}


def main() -> None:
    figures = split(Path(sys.argv[1]))
    wall, orchestration = figures.pop("wall"), figures.pop("orchestration")
    steps = sum(figures.values())
    share = 100 * orchestration / wall
    print(f"wall time {wall:.1f} s; no step running for {orchestration:.1f} s ({share:.1f} %)")
    print(f"step time {steps:.1f} s (steps side by side count each)")
    for kind, value in sorted(figures.items(), key=lambda kv: -kv[1]):
        print(f"  {kind:14s} {value:7.1f} s  {100 * value / steps:5.1f} % of the step time")


if __name__ == "__main__":
    main()
