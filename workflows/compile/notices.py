"""Notices about the data a plan trains on: what it leaves unused (never an error, never silent).

- arrays in a training dataset that no loss reads (hessian, aparam, fparam, ...): once per dataset;
- a resource class that trains data-parallel (``nodes`` x ``gpus`` > 1): what that does to the batch and
  the learning rate in DeePMD-kit's PyTorch backend (docs/gpu-and-argo.md);
(Virials present in every training system are fitted unless the spec says otherwise: the stages decide
that, and say so — ``PlanContext.fit_virials``.)
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping

from lamflow.ops.data.datasets import DatasetInfo
from lamflow.workflows.compile.plan import StepPlan
from lamflow.workflows.spec.resources import TRAINING_CLASSES, ResourcesSpec


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


def parallel_notices(steps: tuple[StepPlan, ...], resources: ResourcesSpec) -> list[str]:
    """One line per training class that runs more than one DeePMD-kit process per step (on Argo; the local
    engine gives a step its GPUs where the machine has them)."""
    notices = []
    used = {step.resource for step in steps}
    for resource_class in TRAINING_CLASSES:
        where, profile = resources.for_class(resource_class)
        processes = (profile.nodes or 1) * max(1, profile.gpus or 1)
        if resource_class in used and processes > 1 and where != "resources.default":
            notices.append(
                f"{where}: {processes} data-parallel processes per training step: each step draws "
                f"{processes} x batch_size frames, and DeePMD-kit's PyTorch backend keeps learning_rate and "
                f"numb_steps as written (divide steps by {processes} to see the same frames)"
            )
    return notices
