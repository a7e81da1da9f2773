"""The root of a lamflow spec file."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from lamflow.workflows.spec.base import Name, SpecModel
from lamflow.workflows.spec.datasets import DatasetSpec
from lamflow.workflows.spec.finetune import FinetuneStage
from lamflow.workflows.spec.model import ModelSpec
from lamflow.workflows.spec.pretrain import PretrainStage
from lamflow.workflows.spec.test import TestGroup


class Stages(SpecModel):
    pretrain: PretrainStage | None = Field(None, description="Multi-task (or single-task) pretraining.")
    finetune: list[FinetuneStage] = Field(default_factory=list, description="Fine-tuning runs.")
    test: list[TestGroup] = Field(default_factory=list, description="Test groups (models x datasets).")

    @model_validator(mode="after")
    def _not_empty(self) -> Stages:
        if self.pretrain is None and not self.finetune and not self.test:
            raise ValueError("no stage given (pretrain, finetune or test)")
        return self


class Spec(SpecModel):
    """A lamflow workflow: datasets, a model architecture and the stages to run."""

    version: Literal[1] = Field(1, description="Spec format version.")
    name: Name = Field(description="Workflow name; used in run ids and manifests.")
    description: str = ""
    datasets: dict[Name, DatasetSpec] = Field(min_length=1, description="Dataset name -> data.")
    model: ModelSpec = Field(default_factory=ModelSpec)
    stages: Stages
