"""The stages of a spec, one module each, discovered (not listed by hand) and run in their ``order``.

A stage module defines a :class:`~lamflow.workflows.stages.base.Stage` subclass and exposes an instance as
``STAGE``; its spec section is a field of :class:`lamflow.workflows.spec.stages.Stages` named like it.
Adding a stage touches its spec module (and that field), its stage module, its op module and their tests.

May import: ``compile`` (plan records, DeePMD-kit inputs), ``resolve`` (what validate read), ``spec``,
``errors``, ``ops`` (op classes and their parameter models). Never ``planner``, ``engines``, ``api``, ``cli``.
"""

from __future__ import annotations

import importlib
import pkgutil
from functools import cache
from typing import Any

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
