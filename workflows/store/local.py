"""The local artifact store: inputs are staged as link farms (nothing is copied), outputs stay in the
run directory where dflow's debug mode wrote them."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from lamflow.ops.runtime.files import resolve_output
from lamflow.workflows.store.base import ArtifactStore

STEPS_DIR = "steps"  # dflow's workflow id in a local run, hence the folder of step directories


class LocalStore(ArtifactStore):
    """Stages with dflow's debug-mode upload (symlinks under the configured ``debug_artifact_dir``)."""

    def stage(self, request_id: str, source: Path | Mapping[str, Path]) -> Any:
        from dflow import upload_artifact  # needs the caller's dflow debug configuration

        return upload_artifact(dict(source) if isinstance(source, Mapping) else source)

    def output_path(self, run_dir: Path, step_key: str, name: str) -> Path | None:
        artifact = run_dir / STEPS_DIR / step_key / "outputs" / "artifacts" / name
        return resolve_output(artifact) if artifact.exists() else None
