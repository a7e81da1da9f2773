"""Training settings shared by the pretrain and finetune stages."""

from __future__ import annotations

import re
from typing import Annotated, Any

from pydantic import Field, PlainValidator, WithJsonSchema

from lamflow.workflows.spec.base import MAX_BATCH, MAX_LR, MAX_PREF, MAX_SEED, MAX_STEPS, SpecModel

_AUTO = re.compile(r"^auto(:[1-9][0-9]*)?$")


def _batch_size(value: Any) -> int | str:
    if isinstance(value, int) and not isinstance(value, bool) and 0 < value <= MAX_BATCH:
        return value
    if isinstance(value, str) and _AUTO.match(value):
        return value
    raise ValueError(f"expected a whole number from 1 to {MAX_BATCH}, 'auto' or 'auto:N'")


# One validator instead of a union, so errors point at `batch_size` itself.
BatchSize = Annotated[
    int | str,
    PlainValidator(_batch_size),
    WithJsonSchema(
        {
            "anyOf": [
                {"type": "integer", "minimum": 1, "maximum": MAX_BATCH},
                {"type": "string", "pattern": _AUTO.pattern},
            ]
        }
    ),
]


class LearningRateSpec(SpecModel):
    start: float | None = Field(None, gt=0, le=MAX_LR, description="start_lr (default: the preset's).")
    stop: float | None = Field(None, gt=0, le=MAX_LR, description="stop_lr (default: the preset's).")
    decay_steps: int | None = Field(
        None, ge=1, le=MAX_STEPS, description="Default: min(5000, max(1, steps // 20))."
    )


class LossSpec(SpecModel):
    """Energy-loss prefactors (DeePMD-kit ``loss`` type ``ener``); unset values come from the preset."""

    start_pref_e: float | None = Field(None, ge=0, le=MAX_PREF)
    limit_pref_e: float | None = Field(None, ge=0, le=MAX_PREF)
    start_pref_f: float | None = Field(None, ge=0, le=MAX_PREF)
    limit_pref_f: float | None = Field(None, ge=0, le=MAX_PREF)
    start_pref_v: float | None = Field(None, ge=0, le=MAX_PREF)
    limit_pref_v: float | None = Field(None, ge=0, le=MAX_PREF)


class TrainingSpec(SpecModel):
    steps: int = Field(1000, ge=1, le=MAX_STEPS, description="numb_steps.")
    batch_size: BatchSize = Field("auto", description="Frames per batch: an integer, 'auto' or 'auto:N'.")
    learning_rate: LearningRateSpec = Field(default_factory=LearningRateSpec)
    loss: LossSpec = Field(default_factory=LossSpec)
    seed: int = Field(1, ge=0, le=MAX_SEED)
    disp_freq: int | None = Field(None, ge=1, le=MAX_STEPS, description="Default: min(100, steps).")
    save_freq: int | None = Field(None, ge=1, le=MAX_STEPS, description="Default: steps.")
    extra: dict[str, Any] = Field(
        default_factory=dict, description="Raw keys deep-merged into DeePMD-kit's `training` section."
    )
