"""The lamflow spec: pydantic models (one module per part) and the loader that resolves a spec file.

``load_spec``, ``ResolvedSpec`` and ``Spec`` are imported lazily: the stage modules import the section
models in this package, and the root ``Spec`` is assembled from the stages.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from lamflow.workflows.spec.loader import ResolvedSpec, load_spec
    from lamflow.workflows.spec.spec import Spec

__all__ = ["ResolvedSpec", "Spec", "load_spec"]


def __getattr__(name: str) -> Any:
    if name in ("ResolvedSpec", "load_spec"):
        from lamflow.workflows.spec import loader

        return getattr(loader, name)
    if name == "Spec":
        from lamflow.workflows.spec.spec import Spec

        return Spec
    raise AttributeError(name)
