"""Step groups: which short steps share one worker process (one pod on Argo). Pure: no I/O.

Stages declare which steps are short (``StepPlan.short``: freeze, change-bias, test). Short steps that
become ready together on the same kind of resource form a group: they wait for the same long (training)
steps — those upstream of them, reached without passing through another long step. A chain of short steps
(change-bias, then its test) therefore stays in one group, and a group lists its steps in plan order.

Group names are stable and readable: ``after-<long step keys>``, with ``-on-<resource>`` for a resource
other than the default, and ``start`` for short steps that wait for no training. Grouping changes no step
key, no cache key and nothing a step computes; it only decides where steps run.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

from lamflow.workflows.compile.plan import StepPlan

MAX_NAME = 50  # room for suffixes in Argo template names (63 characters at most)


def _long_upstream(
    step: StepPlan, by_key: dict[str, StepPlan], memo: dict[str, frozenset[str]]
) -> frozenset[str]:
    """The long steps ``step`` waits for, looking through short steps."""
    if step.key not in memo:
        found: set[str] = set()
        for dep in step.depends:
            upstream = by_key.get(dep)  # None: a loop (its last iteration trains)
            found |= _long_upstream(upstream, by_key, memo) if upstream and upstream.short else {dep}
        memo[step.key] = frozenset(found)
    return memo[step.key]


def group_name(after: frozenset[str], resource: str) -> str:
    name = "after-" + "-".join(sorted(after)) if after else "start"
    if len(name) > MAX_NAME:
        digest = hashlib.sha256("\n".join(sorted(after)).encode()).hexdigest()[:8]
        name = f"{name[: MAX_NAME - 9].rstrip('-')}-{digest}"
    return name if resource == "default" else f"{name}-on-{resource}"


def group_steps(steps: Sequence[StepPlan]) -> dict[str, tuple[str, ...]]:
    """Group name -> keys of its short steps (plan order); groups in the order of their first step."""
    by_key = {s.key: s for s in steps}
    memo: dict[str, frozenset[str]] = {}
    groups: dict[str, list[str]] = {}
    for step in steps:
        if step.short:
            groups.setdefault(group_name(_long_upstream(step, by_key, memo), step.resource), []).append(
                step.key
            )
    return {name: tuple(keys) for name, keys in groups.items()}
