"""Plan -> dflow Workflow (a DAG of PythonOP tasks, one per step, keyed by the step key).

Inputs that come from outside the workflow (datasets, external checkpoints) are *staged* by the engine
first: :func:`staging_requests` says what to stage, the engine turns each request into a dflow artifact
(local link farm, or an S3 object), and :func:`build_workflow` wires them in. Building needs no network.
"""

from __future__ import annotations

import importlib
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lamflow.workflows.compile.plan import LocalFile, Plan, StepOutput

OP_CLASSES = {
    "pretrain": "lamflow.ops.pretrain:PretrainOP",
    "freeze": "lamflow.ops.freeze:FreezeOP",
    "finetune": "lamflow.ops.finetune:FinetuneOP",
    "change-bias": "lamflow.ops.bias:ChangeBiasOP",
    "test": "lamflow.ops.evaluate:TestOP",
}


@dataclass(frozen=True)
class StepRuntime:
    """How each step's Python runs: ``command`` (interpreter) and, for Argo, the container ``image``."""

    command: tuple[str, ...] = ("python3",)
    image: str | None = None


def op_class(op: str) -> type:
    module, _, name = OP_CLASSES[op].partition(":")
    return getattr(importlib.import_module(module), name)


def datasets_request_id(names: tuple[str, ...]) -> str:
    return "datasets:" + ",".join(names)


def file_request_id(path: Path) -> str:
    return f"file:{path}"


def staging_requests(plan: Plan) -> dict[str, Path | dict[str, Path]]:
    """What each step needs staged: request id -> a path, or {entry name: path} for dataset bundles."""
    requests: dict[str, Path | dict[str, Path]] = {}
    for step in plan.steps:
        if step.datasets:
            requests[datasets_request_id(step.datasets)] = {n: plan.dataset_paths[n] for n in step.datasets}
        for source in step.artifacts.values():
            if isinstance(source, LocalFile):
                requests[file_request_id(source.path)] = source.path
    return requests


def build_workflow(
    plan: Plan, staged: Mapping[str, Any], runtime: StepRuntime, workflow_id: str | None = None
):
    """A dflow ``Workflow`` for ``plan``; ``staged`` maps every staging request id to a dflow artifact."""
    from dflow import DAG, Task, Workflow
    from dflow.python import PythonOPTemplate

    templates: dict[str, Any] = {}
    tasks: dict[str, Any] = {}
    dag = DAG(name=f"{plan.name}-dag")
    for step in plan.steps:
        if step.op not in templates:
            templates[step.op] = PythonOPTemplate(
                op_class(step.op),
                image=runtime.image,
                command=list(runtime.command),
                upload_dflow=False,
            )
        artifacts: dict[str, Any] = {}
        if step.datasets:
            artifacts["datasets"] = staged[datasets_request_id(step.datasets)]
        for name, source in step.artifacts.items():
            if isinstance(source, StepOutput):
                artifacts[name] = tasks[source.step].outputs.artifacts[source.name]
            else:
                artifacts[name] = staged[file_request_id(source.path)]
        task = Task(
            name=step.key,
            template=templates[step.op],
            parameters=dict(step.parameters),
            artifacts=artifacts,
            key=step.key,
        )
        tasks[step.key] = task
        dag.add(task)
    return Workflow(name=plan.name, dag=dag, id=workflow_id)
