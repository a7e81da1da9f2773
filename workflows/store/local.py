"""The local artifact store: inputs are staged as link farms (nothing is copied), outputs stay in the
run directory where dflow's debug mode wrote them."""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from lamflow.workflows.store.base import ArtifactStore

STEPS_DIR = "steps"  # dflow's workflow id in a local run, hence the folder of step directories


def resolve_output(artifact: Path) -> Path:
    """The file or folder a step returned for an output artifact.

    dflow stores an output as a folder holding the returned path (relative to the step's directory)
    plus a ``.dflow/`` catalog naming it; a single cataloged item is resolved to that item.
    """
    target = artifact.resolve()
    catalog = target / ".dflow"
    if not catalog.is_dir():
        return target
    items = []
    for entry in sorted(catalog.iterdir()):
        try:
            items += [i["dflow_list_item"] for i in json.loads(entry.read_text()).get("path_list", [])]
        except (ValueError, KeyError, TypeError):
            return target
    return target / items[0] if len(items) == 1 and (target / items[0]).exists() else target


class LocalStore(ArtifactStore):
    """Stages with dflow's debug-mode upload (symlinks under the configured ``debug_artifact_dir``)."""

    def stage(self, request_id: str, source: Path | Mapping[str, Path]) -> Any:
        from dflow import upload_artifact  # needs the caller's dflow debug configuration

        return upload_artifact(dict(source) if isinstance(source, Mapping) else source)

    def output_path(self, run_dir: Path, step_key: str, name: str) -> Path | None:
        artifact = run_dir / STEPS_DIR / step_key / "outputs" / "artifacts" / name
        return resolve_output(artifact) if artifact.exists() else None
