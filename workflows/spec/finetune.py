"""``stages.finetune`` — fine-tune runs, each from a pretrain head, a random fitting net or a model file."""

from __future__ import annotations

from pydantic import Field

from lamflow.workflows.spec.base import ModelRef, Name, SpecModel, SpecPath
from lamflow.workflows.spec.datasets import PropertyName
from lamflow.workflows.spec.training import TrainingSpec

RANDOM_HEAD = "random"


class FinetuneFrom(SpecModel):
    head: str | None = Field(
        None,
        description="Head of the pretrained (or given) multi-task model to start from; 'random' starts "
        "from the shared descriptor with a freshly initialised fitting net.",
    )
    model_file: SpecPath | None = Field(
        None,
        description="External DeePMD-kit training checkpoint (.pt) to start from instead of this spec's "
        "pretrain stage. Relative to the spec file.",
    )
    model: ModelRef | None = Field(
        None,
        description="Or a model with a training checkpoint: 'models.<name>' (a .pt declared under models:, "
        "with its head), 'finetune.<name>', 'distill.<name>'.",
    )


class FinetuneSpec(SpecModel):
    name: Name = Field(description="Name of the fine-tuned model; step key finetune-<name>.")
    from_: FinetuneFrom = Field(alias="from", description="Starting point.")
    datasets: list[Name] = Field(min_length=1)
    validation: list[Name] = Field(default_factory=list)
    training: TrainingSpec = Field(default_factory=TrainingSpec)
    property: PropertyName | None = Field(
        None,
        description="Fine-tune to a per-frame property the datasets declare (datasets.<name>.properties): "
        "the source's descriptor with a new property fitting net (DeePMD-kit --model-branch RANDOM); the "
        "model finetune.<name> then predicts the property, and tests report it per component. None: "
        "energies and forces.",
    )
