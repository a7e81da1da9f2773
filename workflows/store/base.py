"""The artifact-store seam: staging a run's inputs for its steps and locating its outputs.

An engine asks its store to *stage* every input that comes from outside the workflow (dataset bundles,
user files) and gets back something dflow accepts as a task input artifact; after (or during) a run it
asks where a step's output artifact is. The local store keeps everything on this machine; an S3 store
(boto3) will implement the same interface for the Argo engine.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping
from pathlib import Path
from typing import Any


class ArtifactStore(ABC):
    @abstractmethod
    def stage(self, request_id: str, source: Path | Mapping[str, Path]) -> Any:
        """Make ``source`` (a file/folder, or {entry name: path}) available to steps; a dflow artifact."""

    @abstractmethod
    def output_path(self, run_dir: Path, step_key: str, name: str) -> Path | None:
        """Where a finished step's output artifact ``name`` is on this machine (None if absent)."""
