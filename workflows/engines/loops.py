"""Loops on the local engine: how far each loop of a run has got (from its decision steps' outputs in the
run directory), the step records of the iterations that join the plan, and each iteration's row.

The local engine runs a plan with loops as a sequence of static plans (compile/loops.py): after each, it
reads the decision steps here and, while a loop goes on, unrolls one iteration more.
"""

from __future__ import annotations

import json
from datetime import datetime
from pathlib import Path
from typing import Any

from lamflow.workflows.compile.loops import LoopProgress, unroll
from lamflow.workflows.compile.plan import LoopPlan, Plan
from lamflow.workflows.engines.summary import (
    DONE,
    ORCHESTRATION,
    IterationRow,
    LoopRecord,
    RunSummary,
    StepRecord,
)
from lamflow.workflows.store.local import STEPS_DIR

# what each op's time counts as in an iteration's row
KINDS = {
    "finetune": "training", "scratch": "training", "explore-loop": "md", "model-devi": "deviation",
    "label-dft": "labelling",
}  # fmt: skip


def _decision(step_dir: Path) -> bool | None:
    """The ``stop`` a finished decision step output; None while it has not finished."""
    try:
        if (step_dir / "phase").read_text() != "Succeeded":
            return None
        return bool(json.loads((step_dir / "outputs" / "parameters" / "stop").read_text()))
    except (OSError, ValueError):
        return None


def loop_progress(plan: Plan, run_dir: Path) -> dict[str, LoopProgress]:
    """Every loop's progress as its decision steps in ``run_dir`` tell it."""
    progress = {}
    for loop in plan.loops:
        n = 1
        while True:
            stop = _decision(run_dir / STEPS_DIR / loop.body_key(n, loop.decision))
            if stop is None or stop or n >= loop.max_iterations:
                progress[loop.key] = LoopProgress(n, stop is not None)
                break
            n += 1
    return progress


def unrolled(plan: Plan, run_dir: Path) -> Plan:
    """The plan as far as the run in ``run_dir`` has unrolled its loops."""
    return unroll(plan, loop_progress(plan, run_dir)) if plan.loops else plan


def add_records(summary: RunSummary, plan: Plan, cache_keys: dict[str, str]) -> list[str]:
    """Records for the steps of ``plan`` the summary does not have yet (an iteration that starts), and the
    dependencies of those it has (a step after a loop, once it stopped); returns the new keys."""
    added = []
    for step in plan.steps:
        record = summary.steps.get(step.key)
        if record is None:
            summary.steps[step.key] = StepRecord(
                key=step.key, op=step.op.name, summary=step.summary, depends=step.depends,
                cache_key=cache_keys.get(step.key),
            )  # fmt: skip
            added.append(step.key)
        else:
            record.depends = step.depends
            record.cache_key = record.cache_key or cache_keys.get(step.key)
    return added


def loop_records(plan: Plan, run_dir: Path, summary: RunSummary) -> dict[str, LoopRecord]:
    """Each loop's iterations so far, from the step records (their outputs collected)."""
    progress = loop_progress(plan, run_dir)
    return {loop.key: _loop_record(loop, progress[loop.key], summary) for loop in plan.loops}


def _interval(record: StepRecord) -> tuple[float, float] | None:
    """When a step ran (epoch seconds, start and end), or None when it has not run to an end."""
    if record.started_at is None or record.duration_s is None:
        return None
    start = datetime.fromisoformat(record.started_at).timestamp()
    return start, start + record.duration_s


def idle_seconds(start: float, end: float, intervals: list[tuple[float, float]]) -> float:
    """The part of ``[start, end]`` that none of ``intervals`` covers."""
    busy, reached = 0.0, start
    for begin, finish in sorted(intervals):
        begin, finish = max(begin, reached), min(finish, end)
        if finish > begin:
            busy += finish - begin
            reached = finish
    return max(0.0, end - start - busy)


def pauses(resumed_at: list[str], intervals: list[tuple[float, float]]) -> list[tuple[float, float]]:
    """The spans the run was not running: from the last step end before each resume to the resume."""
    out = []
    for stamp in resumed_at:
        resumed = datetime.fromisoformat(stamp).timestamp()
        before = [finish for _, finish in intervals if finish <= resumed]
        if before:
            out.append((max(before), resumed))
    return out


def _loop_record(loop: LoopPlan, state: LoopProgress, summary: RunSummary) -> LoopRecord:
    record = LoopRecord(key=loop.key)
    everything = [i for i in map(_interval, summary.steps.values()) if i is not None]
    # a run stopped or failed and resumed later: the wait until the resume is no one's time
    stopped = pauses(summary.resumed_at, everything)
    previous_end: float | None = None
    for n in range(1, state.iterations + 1):
        decision = summary.steps.get(loop.body_key(n, loop.decision))
        found: dict[str, Any] = (decision.parameters.get("record") or {}) if decision else {}
        row = _row(n, found)
        seconds: dict[str, float] = {}
        ran = []
        for step in loop.body:
            step_record = summary.steps.get(loop.body_key(n, step.key))
            if step_record is not None and step_record.duration_s is not None:
                kind = KINDS.get(step.op.name, "other")
                seconds[kind] = round(seconds.get(kind, 0.0) + step_record.duration_s, 2)
                interval = _interval(step_record)
                if interval is not None:
                    ran.append(interval)
        if ran:  # the time in this iteration during which no step of the run ran: the engine's own
            start = min(begin for begin, _ in ran) if previous_end is None else previous_end
            end = max(finish for _, finish in ran)
            paused = sum(max(0.0, min(b, end) - max(a, start)) for a, b in stopped)
            seconds[ORCHESTRATION] = round(idle_seconds(start, end, everything + stopped), 2)
            row.wall_s, previous_end = round(end - start - paused, 2), end
        row.seconds = seconds
        record.iterations.append(row)
        if decision is not None and decision.phase in DONE and found:
            record.stopped = bool(found.get("stop"))
            record.converged = bool(found.get("converged"))
            record.reason = found.get("reason")
    record.baseline = baseline_verdict(record.iterations)
    if record.stopped and "labelled" in loop.outputs:
        source = loop.outputs["labelled"]
        last = summary.steps.get(loop.body_key(state.iterations, source.step))
        record.labelled = last.outputs.get(source.name) if last is not None else None
    return record


def baseline_verdict(rows: list[IterationRow]) -> str | None:
    """Selection by deviation against random picks at equal budget, on the last iteration that tested
    both (the first iteration's two models train on the same data: no verdict from it alone)."""
    both = [r for r in rows if r.test_force_rmse is not None and r.random_test_force_rmse is not None]
    if not both or both[-1].iteration == 1:
        return None
    last = both[-1]
    selected, random = last.test_force_rmse * 1000, last.random_test_force_rmse * 1000  # type: ignore[operator]
    figures = (
        f"held-out force RMSE {selected:.1f} against {random:.1f} meV/Å after iteration {last.iteration}"
    )
    if selected < random:
        return f"selection by model deviation beat random picks at equal budget: {figures}"
    return f"selection by model deviation did NOT beat random picks at equal budget: {figures}"


def _row(iteration: int, found: dict[str, Any]) -> IterationRow:
    selection = found.get("selection") or {}
    labelling = found.get("labelling") or {}
    explored = selection.get("explored")

    def share(kind: str) -> float | None:
        return round(selection[kind] / explored, 6) if explored and kind in selection else None

    failures = [labelling.get(k) for k in ("not_converged", "failed") if labelling.get(k) is not None]
    return IterationRow(
        iteration=iteration,
        explored=explored,
        accurate_fraction=found.get("accurate_fraction"),
        candidate_fraction=share("candidate"),
        failed_fraction=share("failed"),
        picked=selection.get("picked"),
        labelled=labelling.get("labelled"),
        label_failures=sum(failures) if failures else None,
        test_force_rmse=found.get("test_force_rmse"),
        random_test_force_rmse=found.get("random_test_force_rmse"),
        decision=found.get("reason"),
    )
