"""``stages.transfer`` — transferability studies: models x downstream datasets -> zero-shot errors (after an
energy-bias re-fit, and unshifted), learning curves (fine-tunes on N train frames, with repeats) and
from-scratch baselines at the same N, per-system coverage, and gates for CI. With ``property``, the study
fine-tunes the models' descriptor to a per-frame property of the datasets (a property fitting net)."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field, model_validator

from lamflow.workflows.spec.base import MAX_FRAMES, ModelRef, Name, SpecModel
from lamflow.workflows.spec.datasets import PropertyName
from lamflow.workflows.spec.training import TrainingSpec

GateMetric = Literal[
    "energy_rmse_per_atom",
    "force_rmse",
    "virial_rmse_per_atom",
    "normalized_energy",
    "normalized_force",
    "normalized_virial",
    "normalized_error",
    "property_rmse",
    "property_mae",
    "normalized_property",
]
PROPERTY_METRICS = ("property_rmse", "property_mae", "normalized_property", "normalized_error")


class LearningCurveSpec(SpecModel):
    sizes: list[int] = Field(
        min_length=1, description="Train frames per fine-tune (drawn from the dataset's train part)."
    )
    repeats: int = Field(1, ge=1, le=20, description="Fine-tunes per size, each on another random subset.")
    scratch: bool = Field(
        True,
        description="Also train from scratch at each size and repeat (the spec's `model:` architecture, "
        "the same training settings): what the pretrained model is worth.",
    )
    training: TrainingSpec = Field(default_factory=TrainingSpec, description="For fine-tunes and scratch.")

    @model_validator(mode="after")
    def _sizes(self) -> LearningCurveSpec:
        if any(n < 1 or n > MAX_FRAMES for n in self.sizes):
            raise ValueError(f"sizes must be whole numbers from 1 to {MAX_FRAMES}")
        if len(set(self.sizes)) != len(self.sizes):
            raise ValueError("sizes repeat a value")
        return self


class GateSpec(SpecModel):
    """Fail the run (exit 4) when a result is worse than ``max``."""

    model: ModelRef = Field(description="One of the study's models.")
    dataset: Name = Field(description="One of the study's datasets.")
    metric: GateMetric = Field(description="eV/atom, eV/Å, or a dummy-normalised error (0..1).")
    max: float = Field(ge=0, description="The largest value that passes.")
    at: Literal["zero-shot", "unshifted"] | int = Field(
        "zero-shot",
        description="Which result: zero-shot (after the bias re-fit), unshifted, or a learning-curve size "
        "(the mean over its repeats).",
    )


class TransferSpec(SpecModel):
    name: Name = Field(description="Name of the study; step keys transfer-<name>-...")
    models: list[ModelRef] = Field(
        min_length=1,
        description="Models to study: 'pretrain.<head>', 'finetune.<name>', 'models.<name>' (declared "
        "under models:). Learning curves need ones with a training checkpoint.",
    )
    datasets: list[Name] = Field(
        min_length=1, description="Downstream datasets; each must be split (its test part is held out)."
    )
    property: PropertyName | None = Field(
        None,
        description="A property the datasets declare (datasets.<name>.properties): the learning curve "
        "fine-tunes each model's descriptor with a new property fitting net (and trains the spec's model "
        "with one from scratch), and tests the property per component against a dummy that predicts the "
        "train mean. None: energies and forces.",
    )
    zero_shot: bool = Field(
        True,
        description="Test each model as it is, and after `dp change-bias` (energy studies; a property study "
        "has no zero-shot result and leaves it out).",
    )
    learning_curve: LearningCurveSpec | None = None
    frames: int = Field(0, ge=0, le=MAX_FRAMES, description="Test frames per system (0 = all).")
    gates: list[GateSpec] = Field(default_factory=list)

    @model_validator(mode="before")
    @classmethod
    def _no_zero_shot_for_a_property(cls, data: Any) -> Any:
        """An energy model has no head for the property: a property study has no zero-shot protocol."""
        if isinstance(data, dict) and data.get("property") is not None and "zero_shot" not in data:
            return {**data, "zero_shot": False}
        return data
