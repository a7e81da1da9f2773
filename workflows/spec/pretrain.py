"""``stages.pretrain`` — multi-task pretraining: one fitting head per named group of datasets."""

from __future__ import annotations

from typing import Any

from pydantic import Field

from lamflow.workflows.spec.base import MAX_WEIGHT, Name, SpecModel
from lamflow.workflows.spec.training import TrainingSpec


class HeadSpec(SpecModel):
    datasets: list[Name] = Field(min_length=1, description="Training datasets of this head.")
    validation: list[Name] = Field(default_factory=list, description="Validation datasets of this head.")
    weight: float = Field(
        1.0, gt=0, le=MAX_WEIGHT, description="Sampling weight (DeePMD-kit model_prob, normalised)."
    )
    fitting_net: dict[str, Any] = Field(
        default_factory=dict, description="Fitting-net fragment for this head only."
    )


class PretrainSpec(SpecModel):
    heads: dict[Name, HeadSpec] = Field(
        min_length=1,
        description="Head name -> datasets. Two or more heads give DeePMD-kit's multi-task input "
        "(shared descriptor, one fitting net per head); one head gives a single-task model.",
    )
    training: TrainingSpec = Field(default_factory=TrainingSpec)
