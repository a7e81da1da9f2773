"""Plan -> dflow Workflow (a DAG of PythonOP tasks, one per step, keyed by the step key).

Inputs that come from outside the workflow (datasets, external checkpoints) are *staged* by an artifact
store first: :func:`staging_requests` says what to stage, the store turns each request into a dflow
artifact, and :func:`build_workflow` wires them in. Building needs no network.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from lamflow.workflows.compile.plan import DatasetBundle, LocalFile, Plan, StepOutput, StepPlan


@dataclass(frozen=True)
class StepRuntime:
    """How each step's Python runs: ``command`` (interpreter) and, for Argo, the container ``image``.
    ``step_commands`` overrides the command of some steps (the local engine's grouped steps)."""

    command: tuple[str, ...] = ("python3",)
    image: str | None = None
    step_commands: Mapping[str, tuple[str, ...]] = field(default_factory=dict)

    def command_of(self, key: str) -> tuple[str, ...]:
        return tuple(self.step_commands.get(key, self.command))


def request_id(source: DatasetBundle | LocalFile) -> str:
    if isinstance(source, DatasetBundle):
        return "datasets:" + ",".join(source.names)
    return f"file:{source.path}"


def staging_requests(plan: Plan) -> dict[str, Path | dict[str, Path]]:
    """What the steps need staged: request id -> a path, or {entry name: path} for dataset bundles."""
    requests: dict[str, Path | dict[str, Path]] = {}
    sources = [source for step in plan.steps for source in step.artifacts.values()]
    for loop in plan.loops:  # what every iteration reads from outside (Argo renders loops whole)
        sources += [source for step in loop.body for source in step.artifacts.values()]
        sources += [c.initial for c in loop.carried.values() if c.initial is not None]
    for source in sources:
        if isinstance(source, DatasetBundle):
            requests[request_id(source)] = {n: plan.dataset_paths[n] for n in source.names}
        elif isinstance(source, LocalFile):
            requests[request_id(source)] = source.path
    return requests


def template_name(step: StepPlan, taken: set[str]) -> str:
    """A stable template name (dflow would append a random suffix): the op's name, with the step's
    resource class when that differs, and a number when the same op runs under another command."""
    base = step.op.name if step.resource in ("default", step.op.name) else f"{step.op.name}-{step.resource}"
    name, n = base, 1
    while name in taken:
        n += 1
        name = f"{base}-{n}"
    return name


def build_workflow(
    plan: Plan,
    staged: Mapping[str, Any],
    runtime: StepRuntime,
    workflow_id: str | None = None,
    dag_type: type | None = None,
):
    """A dflow ``Workflow`` for ``plan``; ``staged`` maps every staging request id to a dflow artifact.
    ``dag_type``: a subclass of dflow's ``DAG`` to build instead (the local engine's, which runs it)."""
    from dflow import DAG, Task, Workflow
    from dflow.python import PythonOPTemplate

    templates: dict[tuple[type, tuple[str, ...], str], Any] = {}
    tasks: dict[str, Any] = {}
    dag = (dag_type or DAG)(name=f"{plan.name}-dag")
    for step in plan.steps:
        command = runtime.command_of(step.key)
        if (step.op, command, step.resource) not in templates:
            template = PythonOPTemplate(
                step.op, image=runtime.image, command=list(command), upload_dflow=False
            )
            template.name = template_name(step, {t.name for t in templates.values()})
            templates[step.op, command, step.resource] = template
        artifacts: dict[str, Any] = {}
        for name, source in step.artifacts.items():
            if isinstance(source, StepOutput):
                artifacts[name] = tasks[source.step].outputs.artifacts[source.name]
            else:
                assert isinstance(source, DatasetBundle | LocalFile), (step.key, source)  # loops: unrolled
                artifacts[name] = staged[request_id(source)]
        task = Task(
            name=step.key,
            template=templates[step.op, command, step.resource],
            parameters=step.parameters,
            artifacts=artifacts,
            key=step.key,
        )
        tasks[step.key] = task
        dag.add(task)
    return Workflow(name=plan.name, dag=dag, id=workflow_id)
