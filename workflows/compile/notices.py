"""Notices about the data a plan trains on: what it leaves unused (never an error, never silent).

- arrays in a training dataset that no loss reads (hessian, aparam, fparam, ...): once per dataset;
(Virials present in every training system are fitted unless the spec says otherwise: the stages decide
that, and say so — ``PlanContext.fit_virials``.)
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping

from lamflow.ops.data.datasets import DatasetInfo
from lamflow.workflows.compile.plan import StepPlan


def _training_heads(steps: tuple[StepPlan, ...]) -> Iterator[tuple[StepPlan, str, list[str]]]:
    """(step, head, training datasets) of every training step's heads, in plan order."""
    for step in steps:
        if "head_datasets" in step.parameters:  # a student trains on labels, not on spec datasets
            for head, sets in step.parameters["head_datasets"].items():
                yield step, head, sets["train"]


def data_notices(
    steps: tuple[StepPlan, ...], origins: Mapping[str, str], infos: Mapping[str, DatasetInfo]
) -> list[str]:
    notices = []
    trained = sorted({name for _, _, names in _training_heads(steps) for name in names})
    seen: set[str] = set()
    for name in trained:
        dataset = name.partition("@")[0]  # a split part or subset speaks for its dataset
        others = sorted({a for s in infos[name].systems for a in s.other_arrays})
        if others and dataset not in seen:
            seen.add(dataset)
            notices.append(
                f"datasets.{dataset}: {', '.join(others)} present but not used: DeePMD-kit's energy loss "
                "reads energy, force and virial (use a loss and model that take them, or remove the files)"
            )
    return notices
