"""Loops in a run: how far each loop has got (from its decision steps' outputs), the step records of the
iterations that join the plan, and each iteration's row.

The local engine runs a plan with loops as a sequence of static plans (compile/loops.py): after each, it
reads the decision steps in the run directory here and, while a loop goes on, unrolls one iteration more.
The Argo engine reads the same rows from the step records it builds from the workflow's nodes
(:func:`argo_loop_records`: the decision step's output parameters, each pod's times), with each loop's
shape from the run's ``plan.json``.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from lamflow.workflows.compile.loops import LoopProgress, unroll
from lamflow.workflows.compile.plan import LoopPlan, Plan, iteration_key
from lamflow.workflows.engines.summary import (
    DONE,
    ORCHESTRATION,
    IterationRow,
    LoopRecord,
    RunSummary,
    StepRecord,
)
from lamflow.workflows.store.local import STEPS_DIR

PLAN_FILE = "plan.json"  # the plan as both engines write it into the run directory (Plan.record())


@dataclass(frozen=True)
class LoopShape:
    """What a loop's rows are read with: its key, decision step, iteration limit, body (relative key -> op
    name) and where its ``labelled`` output comes from (relative step key, output name) — from the
    compiled loop, or from its record in ``plan.json`` (where an Argo run's status has no compiled plan)."""

    key: str
    decision: str
    max_iterations: int
    body: tuple[tuple[str, str], ...]
    labelled: tuple[str, str] | None = None

    @classmethod
    def of(cls, loop: LoopPlan) -> LoopShape:
        source = loop.outputs.get("labelled")
        return cls(
            loop.key,
            loop.decision,
            loop.max_iterations,
            tuple((step.key, step.op.name) for step in loop.body),
            None if source is None else (source.step, source.name),
        )

    @classmethod
    def from_record(cls, record: dict[str, Any]) -> LoopShape:
        source = (record.get("outputs") or {}).get("labelled")
        return cls(
            str(record["key"]),
            str(record["decision"]),
            int(record["max_iterations"]),
            tuple((str(step["key"]), str(step["op"])) for step in record["body"]),
            None if source is None else (str(source["step"]), str(source["name"])),
        )

    def body_key(self, iteration: int, relative: str) -> str:
        return iteration_key(self.key, iteration, relative)


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


def _progress(loop: LoopPlan | LoopShape, stop_of: Callable[[str], bool | None]) -> LoopProgress:
    """How far ``loop`` got: iteration after iteration while its decision step (``stop_of`` its key: the
    ``stop`` it output, None while it has not finished) said go on, up to ``max_iterations``."""
    n = 1
    while True:
        stop = stop_of(loop.body_key(n, loop.decision))
        if stop is None or stop or n >= loop.max_iterations:
            return LoopProgress(n, stop is not None)
        n += 1


def loop_progress(plan: Plan, run_dir: Path) -> dict[str, LoopProgress]:
    """Every loop's progress as its decision steps in ``run_dir`` tell it."""
    return {
        loop.key: _progress(loop, lambda key: _decision(run_dir / STEPS_DIR / key)) for loop in plan.loops
    }


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
    return {loop.key: _loop_record(LoopShape.of(loop), progress[loop.key], summary) for loop in plan.loops}


def _recorded_stop(record: StepRecord | None) -> bool | None:
    """The ``stop`` a finished decision step's record holds; None while it has not finished."""
    if record is None or record.phase not in ("Succeeded", "Cached"):
        return None
    stop = record.parameters.get("stop")
    return stop if isinstance(stop, bool) else None


def recorded_progress(shape: LoopShape, summary: RunSummary) -> LoopProgress:
    """A loop's progress as the decision steps' records tell it (an Argo run: their output parameters)."""
    return _progress(shape, lambda key: _recorded_stop(summary.steps.get(key)))


def argo_loop_records(run_dir: Path, summary: RunSummary) -> dict[str, LoopRecord]:
    """Each loop's iterations so far in a run that keeps no decision files (Argo): the shapes from
    ``plan.json``, progress and rows from the step records; nothing for a plan without loops (or none
    recorded)."""
    try:
        loops = json.loads((run_dir / PLAN_FILE).read_text()).get("loops") or []
        shapes = [LoopShape.from_record(loop) for loop in loops]
    except (OSError, ValueError, KeyError, TypeError):
        return {}
    return {shape.key: _loop_record(shape, recorded_progress(shape, summary), summary) for shape in shapes}


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


def _loop_record(loop: LoopShape, state: LoopProgress, summary: RunSummary) -> LoopRecord:
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
        for relative, op in loop.body:
            step_record = summary.steps.get(loop.body_key(n, relative))
            if step_record is not None and step_record.duration_s is not None:
                kind = KINDS.get(op, "other")
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
    if record.stopped and loop.labelled is not None:
        step, name = loop.labelled
        last = summary.steps.get(loop.body_key(state.iterations, step))
        record.labelled = last.outputs.get(name) if last is not None else None
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
