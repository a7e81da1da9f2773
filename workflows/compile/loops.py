"""Loops unrolled: the static plan of a run whose loops have run (or are to run) so many iterations.
Pure: no I/O.

A :class:`~lamflow.workflows.compile.plan.LoopPlan` is decided at run time. The local engine runs it as a
sequence of static plans: first with one iteration of each loop; whenever an iteration's decision step
says "go on", with one iteration more (the steps that ran are kept by key, as on resume); once it says
"stop", with the steps after the loop wired to its last iteration's outputs. :func:`unroll` builds such a
plan from how far each loop has got (:class:`LoopProgress`). Argo runs the same loop as a recursive
template instead (workflows/argo/loops.py); both name iteration n's steps ``<loop>-i<nnn>-<step>``.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass

from lamflow.workflows.compile.groups import group_steps
from lamflow.workflows.compile.plan import (
    ITERATION,
    ArtifactSource,
    Carried,
    IterationOutput,
    LoopOutput,
    LoopPlan,
    Plan,
    PlanError,
    StepOutput,
    StepPlan,
)


@dataclass(frozen=True)
class LoopProgress:
    """How far a loop has got: the iterations to run (or that ran), and whether the last one stopped it."""

    iterations: int = 1
    stopped: bool = False


def iteration_steps(loop: LoopPlan, iteration: int) -> list[StepPlan]:
    """The body of ``loop`` as the concrete steps of one iteration."""
    steps = []
    for step in loop.body:
        artifacts: dict[str, ArtifactSource] = {}
        for name, source in step.artifacts.items():
            if isinstance(source, IterationOutput):
                artifacts[name] = StepOutput(loop.body_key(iteration, source.step), source.name)
            elif isinstance(source, Carried):
                carried = loop.carried[source.name]
                if iteration > 1:
                    following = carried.following
                    artifacts[name] = StepOutput(loop.body_key(iteration - 1, following.step), following.name)
                elif carried.initial is not None:
                    artifacts[name] = carried.initial
            else:
                artifacts[name] = source
        params = step.params
        if ITERATION in type(params).model_fields:
            params = params.model_copy(update={ITERATION: iteration})
        steps.append(
            dataclasses.replace(
                step, key=loop.body_key(iteration, step.key), params=params, artifacts=artifacts
            )
        )
    return steps


def loop_output(loop: LoopPlan, iterations: int, name: str) -> StepOutput:
    """Where a stopped loop's output ``name`` is: its last iteration's step."""
    source = loop.outputs[name]
    return StepOutput(loop.body_key(iterations, source.step), source.name)


def unroll(plan: Plan, progress: Mapping[str, LoopProgress] | None = None) -> Plan:
    """``plan`` with every loop unrolled to its ``progress`` (default: one iteration, not stopped). Steps
    that read the output of a loop that has not stopped (directly or through other steps) are left out:
    they join the plan once it stops. The result has no loops left; a plan without loops is returned as
    it is."""
    if not plan.loops:
        return plan
    progress = progress or {}
    at = {loop.position: [] for loop in plan.loops}  # type: dict[int, list[LoopPlan]]
    for loop in plan.loops:
        at[loop.position].append(loop)
    steps: list[StepPlan] = []
    origins = dict(plan.origins)
    left_out: set[str] = set()
    for n in range(len(plan.steps) + 1):
        for loop in at.get(n, []):
            state = progress.get(loop.key, LoopProgress())
            if not 1 <= state.iterations <= loop.max_iterations:
                raise PlanError(f"{loop.key}: {state.iterations} iterations (1..{loop.max_iterations})")
            if any(dep in left_out for dep in loop.outer_depends):
                left_out.add(loop.key)
                continue
            for iteration in range(1, state.iterations + 1):
                last = state.stopped and iteration == state.iterations
                for step in iteration_steps(loop, iteration):
                    steps.append(_named(step, loop, iteration) if last else step)
                    origins[step.key] = plan.origins.get(loop.key, loop.key)
            if not state.stopped:
                left_out.add(loop.key)
        if n == len(plan.steps):
            break
        step = plan.steps[n]
        if any(dep in left_out for dep in step.depends):
            left_out.add(step.key)
            continue
        steps.append(_wired(step, plan.loops, progress))
    return dataclasses.replace(plan, steps=tuple(steps), origins=origins, groups=group_steps(steps), loops=())


def _wired(step: StepPlan, loops: tuple[LoopPlan, ...], progress: Mapping[str, LoopProgress]) -> StepPlan:
    """A step after a stopped loop, its loop outputs replaced by the last iteration's step outputs."""
    by_key = {loop.key: loop for loop in loops}
    artifacts = dict(step.artifacts)
    for name, source in step.artifacts.items():
        if isinstance(source, LoopOutput):
            loop = by_key[source.step]
            artifacts[name] = loop_output(loop, progress[loop.key].iterations, source.name)
    return step if artifacts == step.artifacts else dataclasses.replace(step, artifacts=artifacts)


def _named(step: StepPlan, loop: LoopPlan, iteration: int) -> StepPlan:
    """A step of a stopped loop's last iteration that outputs the loop's model (or checkpoint): named
    with the loop's model reference, as the step of any stage that trains a model."""
    refs = {}
    for output, field in (("model", "model_ref"), ("checkpoint", "checkpoint_ref")):
        source = loop.outputs.get(output)
        if (
            loop.model_ref is not None
            and source is not None
            and loop.body_key(iteration, source.step) == step.key
        ):
            refs[field] = loop.model_ref
    if not refs:
        return step
    return dataclasses.replace(
        step,
        model_ref=refs.get("model_ref", step.model_ref),
        checkpoint_ref=refs.get("checkpoint_ref", step.checkpoint_ref),
    )
