"""Step groups on Argo: the short steps of a group (compile/groups.py) run in one pod.

:func:`group_tasks` takes the DAG tasks of every step (as :func:`render.dag_tasks` writes them) and
replaces each group's tasks with one task running the group template: its ``steps`` parameter tells the
in-pod runner (:mod:`lamflow.ops.group`) each step's op, parameters and input sources; inputs from outside
the group become the group's input artifacts ``in-<n>``; each step's outputs become the group's outputs
``<step>--<output>``. References of other tasks (and of the DAG's outputs) to a grouped step are rewritten
to the group. Pure: no I/O.
"""

from __future__ import annotations

import json
import re
from typing import Any

from lamflow.ops.group import output_name
from lamflow.ops.runtime.contract import artifact_fields
from lamflow.workflows.compile.plan import Plan

# a group above this many steps runs as parallel pods instead: on a cluster a large fan-out (1,000 tests)
# gains more from parallel pods than from saved pod start-ups, and its outputs would swell the manifest
MAX_POD_STEPS = 64
_REFERENCE = re.compile(r"\{\{tasks\.([a-z0-9-]+)\.outputs\.(artifacts|parameters)\.([A-Za-z0-9_-]+)\}\}")
TEMPLATE_PREFIX = "group-"


def task_output(task: str, kind: str, name: str) -> str:
    """An Argo reference to an output of a DAG task (``kind``: artifacts or parameters); :data:`_REFERENCE`
    reads it back."""
    return "{{tasks." + task + ".outputs." + kind + "." + name + "}}"


def rewrite(text: str, task_of: dict[str, str]) -> str:
    """``{{tasks.<step>.outputs.X.<name>}}`` of a grouped step -> the same output of its group."""

    def swap(match: re.Match[str]) -> str:
        step, kind, name = match.groups()
        if step not in task_of:
            return match.group(0)
        return task_output(task_of[step], kind, output_name(step, name))

    return _REFERENCE.sub(swap, text)


def pod_groups(plan: Plan) -> dict[str, tuple[str, ...]]:
    """The step groups that run as one pod each (at most MAX_POD_STEPS steps)."""
    return {group: keys for group, keys in plan.groups.items() if len(keys) <= MAX_POD_STEPS}


def group_tasks(
    plan: Plan, tasks: list[dict[str, Any]], groups: dict[str, tuple[str, ...]]
) -> tuple[list[dict[str, Any]], dict[str, dict[str, Any]]]:
    """(the DAG's tasks with the tasks of each of ``groups`` (:func:`pod_groups`) replaced by one, group
    name -> its template's interface: ``{"inputs": [...], "outputs": [...], "metrics": [...]}``)."""
    task_of = {key: group for group, keys in groups.items() for key in keys}
    by_key = {task["name"]: task for task in tasks}
    steps = {step.key: step for step in plan.steps}
    depends = {
        **{loop.key: loop.outer_depends for loop in plan.loops},
        **{k: s.depends for k, s in steps.items()},
    }
    interfaces: dict[str, dict[str, Any]] = {}
    grouped: dict[str, dict[str, Any]] = {}
    for group, keys in groups.items():
        sources: dict[str, str] = {}  # outside source (as written in the task) -> group input name
        arguments: list[dict[str, Any]] = []
        described = []
        outputs: list[str] = []
        metrics: list[str] = []
        for key in keys:
            artifacts: dict[str, Any] = {}
            for argument in by_key[key]["arguments"]["artifacts"]:
                origin = argument.get("from")
                match = _REFERENCE.fullmatch(origin or "")
                if match and match.group(1) in keys:
                    artifacts[argument["name"]] = {"step": match.group(1), "output": match.group(3)}
                    continue
                marker = origin or json.dumps(argument.get("s3"), sort_keys=True)
                if marker not in sources:
                    sources[marker] = f"in-{len(sources)}"
                    entry: dict[str, Any] = {"name": sources[marker]}
                    if origin:
                        entry["from"] = rewrite(origin, task_of)
                    else:
                        entry["s3"] = argument["s3"]
                    arguments.append(entry)
                artifacts[argument["name"]] = {"input": sources[marker]}
            op = steps[key].op
            names = sorted(artifact_fields(op.Output))
            outputs += [output_name(key, n) for n in names]
            if "metrics" in op.Output.model_fields:
                metrics.append(output_name(key, "metrics"))
            described.append(
                {
                    "key": key,
                    "op": f"{op.__module__}:{op.__name__}",
                    "params": steps[key].parameters,
                    "artifacts": artifacts,
                    "outputs": names,
                }
            )
        interfaces[group] = {"inputs": [a["name"] for a in arguments], "outputs": outputs, "metrics": metrics}
        grouped[group] = {
            "name": group,
            "template": TEMPLATE_PREFIX + group,
            "arguments": {
                "parameters": [{"name": "steps", "value": json.dumps(described, separators=(",", ":"))}],
                "artifacts": arguments,
            },
        }
    result: list[dict[str, Any]] = []
    for task in tasks:
        key = task["name"]
        if key in task_of:
            if task_of[key] not in [t["name"] for t in result]:
                result.append(grouped[task_of[key]])
            continue
        for argument in task["arguments"]["artifacts"]:
            if "from" in argument:
                argument["from"] = rewrite(argument["from"], task_of)
        result.append(task)
    for task in result:  # dependencies: on tasks, a group standing for each of its steps
        members = groups.get(task["name"], (task["name"],))
        upstream = {task_of.get(d, d) for key in members for d in depends[key]} - {task["name"]}
        if upstream:
            task["depends"] = " && ".join(f"({name}.Succeeded)" for name in sorted(upstream))
        else:
            task.pop("depends", None)
    return result, interfaces


def group_template(group: str, interface: dict[str, Any], image: str) -> dict[str, Any]:
    """The template of one group's pod (resources, retries and labels are added like a step's)."""
    root = "/tmp"
    return {
        "name": TEMPLATE_PREFIX + group,
        "metadata": {"labels": {}},
        "inputs": {
            "parameters": [{"name": "steps"}],
            "artifacts": [{"name": n, "path": f"{root}/inputs/artifacts/{n}"} for n in interface["inputs"]],
        },
        "outputs": {
            "parameters": [
                {
                    "name": "phases",
                    "valueFrom": {"path": f"{root}/outputs/parameters/phases", "default": "{}"},
                },
                *(
                    {"name": n, "valueFrom": {"path": f"{root}/outputs/parameters/{n}", "default": "{}"}}
                    for n in interface["metrics"]
                ),
            ],
            "artifacts": [
                {"name": n, "path": f"{root}/outputs/artifacts/{n}", "optional": True}
                for n in interface["outputs"]
            ],
        },
        "script": {
            "image": image,
            "command": ["python3"],
            "source": "from lamflow.ops.group import main\n\nmain(r'''{{inputs.parameters.steps}}''')\n",
        },
    }
