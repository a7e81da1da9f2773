"""Engines run compiled plans: ``local`` (dflow debug mode, default) and ``argo`` (an Argo Workflow on a
Kubernetes cluster). Chosen by --engine / LAMFLOW_ENGINE."""

from __future__ import annotations

from lamflow.workflows.engines.base import Engine
from lamflow.workflows.errors import UsageError
from lamflow.workflows.settings import Settings

ENGINES = ("local", "argo")


def get_engine(name: str, settings: Settings) -> Engine:
    if name == "local":
        from lamflow.workflows.engines.local import LocalEngine

        return LocalEngine(settings)
    if name == "argo":
        from lamflow.workflows.engines.argo import ArgoEngine

        return ArgoEngine(settings)
    raise UsageError(f"--engine {name}: unknown engine (available: {', '.join(ENGINES)})")
