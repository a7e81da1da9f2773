"""Base model and name rules shared by every part of the spec."""

from __future__ import annotations

import re
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, PlainValidator, StringConstraints, WithJsonSchema

NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.-]*$"
Name = Annotated[str, StringConstraints(pattern=NAME_PATTERN, max_length=48)]

_MODEL_REF = re.compile(r"^[a-z][a-z_-]*\.[A-Za-z0-9][A-Za-z0-9_.-]*$")


def _model_ref(value: Any) -> str:
    if isinstance(value, str) and _MODEL_REF.match(value):
        return value
    raise ValueError("expected a model reference like pretrain.<head> or finetune.<name>")


# `<stage>.<name>`; whether the model exists is checked by the stage that uses the reference.
ModelRef = Annotated[
    str,
    PlainValidator(_model_ref),
    WithJsonSchema({"type": "string", "pattern": _MODEL_REF.pattern}),
]


class SpecModel(BaseModel):
    """Strict: unknown keys are errors, values are not silently coerced across types."""

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)


def slug(name: str) -> str:
    """Kebab-case form of a user name, used in step keys (Argo names are lower-case DNS labels)."""
    return re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-")
