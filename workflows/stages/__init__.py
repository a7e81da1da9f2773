"""The stages of a spec, one module each, discovered (not listed by hand) and run in their ``order``.

A stage module defines a :class:`~lamflow.workflows.stages.base.Stage` subclass and exposes an instance as
``STAGE``. The ``stages:`` section of the spec is assembled from them, so adding a stage touches its spec
module, its stage module, its op module and their tests — nothing else.
"""

from __future__ import annotations

import importlib
import pkgutil
from functools import cache
from typing import Any

from pydantic import Field, create_model, model_validator

from lamflow.workflows.spec.base import SpecModel
from lamflow.workflows.stages.base import Stage

_NOT_STAGES = {"base"}


@cache
def all_stages() -> tuple[Stage[Any], ...]:
    found: list[Stage[Any]] = []
    for module in pkgutil.iter_modules(__path__):
        if module.name.startswith("_") or module.name in _NOT_STAGES:
            continue
        stage = getattr(importlib.import_module(f"{__name__}.{module.name}"), "STAGE", None)
        if not isinstance(stage, Stage):
            raise TypeError(f"{__name__}.{module.name} defines no STAGE")
        if stage.key.replace("-", "_") != module.name:
            raise TypeError(f"{__name__}.{module.name}: STAGE.key is {stage.key!r}; name them alike")
        found.append(stage)
    return tuple(sorted(found, key=lambda s: s.order))


class StagesBase(SpecModel):
    """``stages:`` — one optional section per stage."""

    def section(self, key: str) -> Any:
        return getattr(self, key)

    @model_validator(mode="after")
    def _not_empty(self) -> StagesBase:
        if all(stage.is_empty(self.section(stage.key)) for stage in all_stages()):
            raise ValueError(f"no stage given ({', '.join(s.key for s in all_stages())})")
        return self


def _field(stage: Stage[Any]) -> tuple[Any, Any]:
    if callable(stage.default):
        return stage.section, Field(default_factory=stage.default, description=stage.description)
    return stage.section, Field(stage.default, description=stage.description)


@cache
def stages_model() -> type[StagesBase]:
    """The pydantic model of ``stages:``, with one field per discovered stage, in stage order."""
    fields: dict[str, Any] = {stage.key: _field(stage) for stage in all_stages()}
    return create_model("Stages", __base__=StagesBase, __doc__=StagesBase.__doc__, **fields)
