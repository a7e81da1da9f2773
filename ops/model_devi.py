"""Model-deviation step of the concurrent-learning loop: every dumped frame of the collected exploration
branches evaluated by the K models of an ensemble (each loaded once), and per frame the maximum atomic
force deviation (``max_devi_f``, eV/Å, DeePMD-kit's own arithmetic: :mod:`lamflow.ops.active.deviation`).
Writes ``deviations.json``: per branch, the dump index of every frame and its deviation."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
from dflow.python import FatalError
from pydantic import Field

from lamflow.ops import dp
from lamflow.ops.active.deviation import MIN_MODELS, max_force_deviation
from lamflow.ops.collect import branch_folders
from lamflow.ops.dp import deep_potential
from lamflow.ops.dynamics.md import read_trajectory
from lamflow.ops.evaluation.predict import SystemFrames
from lamflow.ops.explore import TRAJECTORY
from lamflow.ops.runtime.common import work_dir, write_json
from lamflow.ops.runtime.contract import LamflowOP, OpModel

MAX_MODELS = 8
DEVIATIONS = "deviations.json"


class ModelDeviParams(OpModel):
    models: int = Field(ge=MIN_MODELS, le=MAX_MODELS, description="How many of model1..model8 are wired.")


class ModelDeviInput(ModelDeviParams):
    branches: Path = Field(description="Collected exploration branches (the collect step's output).")
    model1: Path
    model2: Path
    model3: Path | None = None
    model4: Path | None = None
    model5: Path | None = None
    model6: Path | None = None
    model7: Path | None = None
    model8: Path | None = None


class ModelDeviOutput(OpModel):
    deviations: Path = Field(description="deviations.json: branch -> {dumps, max_devi_f}.")
    report: dict[str, Any]


def as_system(branch: str, atoms_list: list[Any]) -> SystemFrames:
    """One branch's frames as a SystemFrames (same atoms in every frame, as MD keeps them)."""
    first = atoms_list[0]
    periodic = bool(all(first.pbc))
    return SystemFrames(
        path=branch,
        symbols=tuple(first.get_chemical_symbols()),
        coords=np.stack([a.positions.reshape(-1) for a in atoms_list]),
        cells=np.stack([a.cell.array.reshape(9) for a in atoms_list]) if periodic else None,
        energy=None,
        force=None,
        virial=None,
    )


class ModelDeviOP(LamflowOP[ModelDeviInput, ModelDeviOutput]):
    """The ensemble's maximum force deviation on every explored frame."""

    name = "model-devi"
    preload = ("ase.io", dp.MODEL_DEVI_MODULE)
    Params = ModelDeviParams
    Input = ModelDeviInput
    Output = ModelDeviOutput

    def run(self, inp: ModelDeviInput) -> ModelDeviOutput:
        files = [getattr(inp, f"model{i}") for i in range(1, inp.models + 1)]
        if any(f is None for f in files):
            raise FatalError(f"model-devi: {inp.models} models expected, some are missing")
        models = [deep_potential(Path(f).resolve()) for f in files]
        found: dict[str, dict[str, list[Any]]] = {}
        report: dict[str, Any] = {"models": inp.models, "branches": {}}
        for folder in branch_folders(inp.branches):
            atoms_list = read_trajectory(folder / TRAJECTORY)
            if not atoms_list:  # a branch that blew up and dropped its frames
                found[folder.name] = {"dumps": [], "max_devi_f": []}
                report["branches"][folder.name] = {"frames": 0}
                continue
            try:
                deviation = max_force_deviation(models, as_system(folder.name, atoms_list))
            except ValueError as exc:  # a model whose type map lacks an element of the frames
                raise FatalError(f"model-devi: branch {folder.name}: {exc}") from None
            values = [float(d) for d in deviation]
            finite = [v for v in values if np.isfinite(v)]
            # JSON has no NaN: a frame the models could not evaluate finitely is null (selection: failed)
            shown = [v if np.isfinite(v) else None for v in values]
            found[folder.name] = {"dumps": list(range(len(values))), "max_devi_f": shown}
            report["branches"][folder.name] = {
                "frames": len(values),
                "max": max(finite) if finite else None,
                "mean": float(np.mean(finite)) if finite else None,
            }
            print(f"model-devi {folder.name}: {len(values)} frames, max_devi_f up to "
                  f"{report['branches'][folder.name]['max']} eV/Å")  # fmt: skip
        out = work_dir() / DEVIATIONS
        write_json(out, found)
        return ModelDeviOutput(deviations=out, report=report)
