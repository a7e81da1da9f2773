"""The base of every op's pydantic models, without dflow: modules that only describe data (the dataset
checks, ``lamflow data check``) import this, not :mod:`lamflow.ops.runtime.contract`, and start without
dflow's import (about 0.6 s)."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict


class OpModel(BaseModel):
    """Base of op models: unknown keys are errors; instances are immutable."""

    model_config = ConfigDict(extra="forbid", frozen=True)


__all__ = ["OpModel"]
