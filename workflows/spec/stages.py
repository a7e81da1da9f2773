"""``stages:`` — one optional section per stage, in the order the stages run.

The section models live in this package (one module per stage); the stage modules in
``workflows/stages/`` check and plan them. A new stage adds its section here and its module there;
``tests/workflows/stages/test_stage_modules.py`` checks that the two lists agree.
"""

from __future__ import annotations

from typing import Any

from pydantic import Field, model_validator

from lamflow.workflows.spec.active import ActiveSpec
from lamflow.workflows.spec.base import SpecModel
from lamflow.workflows.spec.compress import CompressSpec
from lamflow.workflows.spec.distill import DistillSpec
from lamflow.workflows.spec.finetune import FinetuneSpec
from lamflow.workflows.spec.pretrain import PretrainSpec
from lamflow.workflows.spec.test import TestSpec
from lamflow.workflows.spec.transfer import TransferSpec


class Stages(SpecModel):
    """``stages:`` — one optional section per stage."""

    pretrain: PretrainSpec | None = Field(None, description="Multi-task (or single-task) pretraining.")
    finetune: list[FinetuneSpec] = Field(default_factory=list, description="Fine-tuning runs.")
    active: list[ActiveSpec] = Field(
        default_factory=list,
        description="Concurrent learning: ensemble, MD exploration, selection by model deviation, DFT "
        "labels, retraining — until converged.",
    )
    distill: list[DistillSpec] = Field(
        default_factory=list,
        description="Distillation: teacher MD exploration, teacher labels, a compressible student.",
    )
    compress: list[CompressSpec] = Field(
        default_factory=list,
        description="Model compression (dp compress) with a drift check and a speed/stability evaluation.",
    )
    transfer: list[TransferSpec] = Field(
        default_factory=list,
        description="Transferability studies: zero-shot, learning curves vs from-scratch, coverage, gates.",
    )
    test: list[TestSpec] = Field(default_factory=list, description="Test groups (models x datasets).")

    def section(self, key: str) -> Any:
        return getattr(self, key)

    @model_validator(mode="after")
    def _not_empty(self) -> Stages:
        keys = list(type(self).model_fields)
        if not any(self.section(key) for key in keys):
            raise ValueError(f"no stage given ({', '.join(keys)})")
        return self
