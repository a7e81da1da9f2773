"""Loops on Argo: a :class:`~lamflow.workflows.compile.plan.LoopPlan` as a recursive DAG template, the
way dflow and dpgen2 build loops (tests/workflows/compile/test_dflow_loop.py pins the pattern).

The template ``<loop key>`` runs one iteration: the body's tasks (named by their relative keys, each
step's ``dflow_key`` carrying the iteration: ``active-w-i002-train-1``), then a task ``next`` that calls
the template itself with the next iteration, ``when`` the decision step's ``stop`` output is false. Its
inputs are the iteration (a number and its tag), the carried artifacts (optional: iteration 1 has no
labelled frames yet) and every artifact of steps outside the loop that the body reads (a template cannot
reach the tasks of the DAG that called it). Its outputs are the loop's outputs: the body's when this
iteration stopped, else those of ``next`` (``fromExpression``). The main DAG calls it once, as the task
``<loop key>``; the steps after the loop read that task's outputs. Pure: no I/O.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from lamflow.workflows.argo.groups import task_output
from lamflow.workflows.compile.plan import (
    ITERATION,
    Carried,
    DatasetBundle,
    IterationOutput,
    LocalFile,
    LoopPlan,
    StepOutput,
    iteration_tag,
)

NEXT = "next"
TAG = "tag"


def outer_input(source: StepOutput) -> str:
    """The loop template's input artifact for an output of a step outside the loop."""
    return f"in-{source.step}--{source.name}"


def _inputs(loop: LoopPlan) -> list[StepOutput]:
    """The outputs of steps outside the loop that its body reads, in body order."""
    found: dict[str, StepOutput] = {}
    for step in loop.body:
        for source in step.artifacts.values():
            if isinstance(source, StepOutput) and not isinstance(source, IterationOutput):
                found.setdefault(outer_input(source), source)
    return list(found.values())


def _staged(source: Any, inputs: dict[str, str], parameter: Callable[[str], str], request: Callable) -> dict:
    return {"s3": {"key": parameter(inputs[request(source)])}}


def loop_template(
    loop: LoopPlan,
    of_body: dict[str, str],
    inputs: dict[str, str],
    parameter: Callable[[str], str],
    request: Callable[[DatasetBundle | LocalFile], str],
) -> dict[str, Any]:
    """The recursive template of ``loop``. ``of_body``: relative key -> step template name; ``inputs``:
    staging request id -> workflow parameter (``parameter`` writes a reference to one)."""
    from dflow.io import convert_value_to_str

    tasks: list[dict[str, Any]] = []
    for step in loop.body:
        artifacts: list[dict[str, Any]] = []
        for name, source in step.artifacts.items():
            if isinstance(source, IterationOutput):
                artifacts.append({"name": name, "from": task_output(source.step, "artifacts", source.name)})
            elif isinstance(source, Carried):
                artifacts.append(
                    {"name": name, "from": "{{inputs.artifacts." + source.name + "}}", "optional": True}
                )
            elif isinstance(source, StepOutput):
                artifacts.append({"name": name, "from": "{{inputs.artifacts." + outer_input(source) + "}}"})
            else:
                assert isinstance(source, DatasetBundle | LocalFile)
                artifacts.append({"name": name, **_staged(source, inputs, parameter, request)})
        parameters = []
        for key, value in step.parameters.items():
            text = (
                "{{inputs.parameters." + ITERATION + "}}" if key == ITERATION else convert_value_to_str(value)
            )
            parameters.append({"name": key, "value": text})
        parameters.append(
            {"name": "dflow_key", "value": f"{loop.key}-{{{{inputs.parameters.{TAG}}}}}-{step.key}"}
        )
        task: dict[str, Any] = {
            "name": step.key,
            "template": of_body[step.key],
            "arguments": {"parameters": parameters, "artifacts": artifacts},
        }
        depends = sorted({s.step for s in step.artifacts.values() if isinstance(s, IterationOutput)})
        if depends:
            task["depends"] = " && ".join(f"({d}.Succeeded)" for d in depends)
        tasks.append(task)
    decision = loop.decision
    following = [
        {"name": name, "from": task_output(c.following.step, "artifacts", c.following.name)}
        for name, c in loop.carried.items()
    ]
    passed = [
        {"name": outer_input(s), "from": "{{inputs.artifacts." + outer_input(s) + "}}"} for s in _inputs(loop)
    ]
    waits = sorted({decision} | {c.following.step for c in loop.carried.values()})
    tasks.append(
        {
            "name": NEXT,
            "template": loop.key,
            "arguments": {
                "parameters": [
                    {"name": ITERATION, "value": task_output(decision, "parameters", "next_iteration")},
                    {"name": TAG, "value": task_output(decision, "parameters", "next_tag")},
                ],
                "artifacts": following + passed,
            },
            "depends": " && ".join(f"({d}.Succeeded)" for d in waits),
            "when": task_output(decision, "parameters", "stop") + " == false",
        }
    )
    stopped = f"tasks['{decision}'].outputs.parameters['stop'] == 'true'"
    outputs = [
        {
            "name": name,
            "fromExpression": f"{stopped} ? tasks['{source.step}'].outputs.artifacts['{source.name}'] : "
            f"tasks['{NEXT}'].outputs.artifacts['{name}']",
        }
        for name, source in loop.outputs.items()
    ]
    return {
        "name": loop.key,
        "inputs": {
            "parameters": [{"name": ITERATION}, {"name": TAG}],
            "artifacts": [{"name": name, "optional": True} for name in loop.carried]
            + [{"name": outer_input(s)} for s in _inputs(loop)],
        },
        "outputs": {"artifacts": outputs},
        "metadata": {"labels": {"lamflow.io/loop": loop.key}},
        "dag": {"tasks": tasks},
    }


def loop_task(
    loop: LoopPlan,
    inputs: dict[str, str],
    parameter: Callable[[str], str],
    request: Callable[[DatasetBundle | LocalFile], str],
) -> dict[str, Any]:
    """The main DAG's task that starts ``loop`` at iteration 1."""
    artifacts: list[dict[str, Any]] = []
    for name, carried in loop.carried.items():
        if isinstance(carried.initial, StepOutput):
            initial = carried.initial
            artifacts.append({"name": name, "from": task_output(initial.step, "artifacts", initial.name)})
        elif carried.initial is not None:
            artifacts.append({"name": name, **_staged(carried.initial, inputs, parameter, request)})
    for source in _inputs(loop):
        artifacts.append(
            {"name": outer_input(source), "from": task_output(source.step, "artifacts", source.name)}
        )
    task: dict[str, Any] = {
        "name": loop.key,
        "template": loop.key,
        "arguments": {
            "parameters": [{"name": ITERATION, "value": "1"}, {"name": TAG, "value": iteration_tag(1)}],
            "artifacts": artifacts,
        },
    }
    if loop.outer_depends:
        task["depends"] = " && ".join(f"({d}.Succeeded)" for d in loop.outer_depends)
    return task
