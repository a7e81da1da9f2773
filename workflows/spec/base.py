"""Base model and name rules shared by every part of the spec."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, PlainValidator, StringConstraints, WithJsonSchema

NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.-]*$"
Name = Annotated[str, StringConstraints(pattern=NAME_PATTERN, max_length=48)]

_MODEL_REF = re.compile(r"^[a-z][a-z_-]*\.[A-Za-z0-9][A-Za-z0-9_.-]*$")


def _model_ref(value: Any) -> str:
    if isinstance(value, str) and _MODEL_REF.match(value):
        return value
    hint = ""
    if isinstance(value, str) and value.endswith((".pt", ".pth")):
        hint = (
            f"; declare the file under models: (e.g. models: {{mine: {{file: {value}}}}}) and use models.mine"
        )
    raise ValueError(
        f"expected a model reference like pretrain.<head>, finetune.<name> or models.<name>{hint}"
    )


# `<stage>.<name>`; whether the model exists is checked by the stage that uses the reference.
ModelRef = Annotated[
    str,
    PlainValidator(_model_ref),
    WithJsonSchema({"type": "string", "pattern": _MODEL_REF.pattern}),
]


class SpecModel(BaseModel):
    """Strict: unknown keys are errors; no value is coerced across types (``"2"`` is not a number, ``1`` is
    not ``true``); floats must be finite. Paths are the one exception: YAML gives them as strings."""

    model_config = ConfigDict(
        extra="forbid", frozen=True, populate_by_name=True, strict=True, allow_inf_nan=False
    )


# Upper bounds of numbers that have a sane one (documented in the JSON Schema and the README).
MAX_STEPS = 10**9  # numb_steps, decay_steps, disp/save_freq: a billion steps is beyond any run
MAX_FRAMES = 10**9
MAX_BATCH = 10**6
MAX_SEED = 2**32 - 1  # numpy/torch seeds
MAX_WEIGHT = 10**6
MAX_LR = 1.0
MAX_PREF = 10**6  # loss prefactors

# A file path as YAML gives it (a string), relative to the spec file.
SpecPath = Annotated[Path, Field(strict=False)]


def slug(name: str) -> str:
    """Kebab-case form of a user name, used in step keys (Argo names are lower-case DNS labels)."""
    return re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-")


def model_slug(ref: str) -> str:
    """``pretrain.H2O_PD`` -> ``pretrain-h2o-pd``; a bare stage (``pretrain``) stays as it is."""
    stage, _, name = ref.partition(".")
    return f"{stage}-{slug(name)}" if name else stage
