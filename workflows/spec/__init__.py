"""The lamflow spec: pydantic models (one module per part) and the loader that resolves a spec file."""

from lamflow.workflows.spec.loader import ResolvedSpec, load_spec
from lamflow.workflows.spec.spec import Spec

__all__ = ["ResolvedSpec", "Spec", "load_spec"]
