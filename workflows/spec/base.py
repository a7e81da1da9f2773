"""Base model and name rules shared by every part of the spec."""

from __future__ import annotations

import re
from typing import Annotated

from pydantic import BaseModel, ConfigDict, StringConstraints

NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.-]*$"
Name = Annotated[str, StringConstraints(pattern=NAME_PATTERN, max_length=48)]


class SpecModel(BaseModel):
    """Strict: unknown keys are errors, values are not silently coerced across types."""

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)


def slug(name: str) -> str:
    """Kebab-case form of a user name, used in step keys (Argo names are lower-case DNS labels)."""
    return re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-")
