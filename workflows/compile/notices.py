"""Notices about the data a plan trains on: what it leaves unused (never an error, never silent).

- arrays in a training dataset that no loss reads (hessian, aparam, fparam, ...): once per dataset;
- virials present in every training system of a head whose loss does not fit them: once per head.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping

from lamflow.ops.data import DatasetInfo
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
    for name in trained:
        others = sorted({a for s in infos[name].systems for a in s.other_arrays})
        if others:
            notices.append(
                f"datasets.{name}: {', '.join(others)} present but not used: DeePMD-kit's energy loss reads "
                "energy, force and virial (use a loss and model that take them, or remove the files)"
            )
    for step, head, names in _training_heads(steps):
        deepmd_input = step.parameters["deepmd_input"]
        loss = deepmd_input["loss_dict"][head] if "loss_dict" in deepmd_input else deepmd_input["loss"]
        if loss.get("start_pref_v") or loss.get("limit_pref_v"):
            continue
        systems = [s for n in names for s in infos[n].systems]
        if systems and all("virial" in s.arrays for s in systems):
            where = origins.get(step.key, step.key)
            notices.append(
                f"{where}: every training system of {', '.join(names)} has virials, but the loss "
                f"of step {step.key} does not fit them (virial prefactors 0); set "
                f"{where}.training.loss.start_pref_v/limit_pref_v (e.g. 0.02/1) to use them"
            )
    return notices
