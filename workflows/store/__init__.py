"""Artifact stores: where a run's inputs are staged for its steps and where its outputs are found."""

from lamflow.workflows.store.base import ArtifactStore
from lamflow.workflows.store.local import LocalStore

__all__ = ["ArtifactStore", "LocalStore"]
