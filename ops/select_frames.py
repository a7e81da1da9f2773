"""Select step of the concurrent-learning loop: the explored frames picked for labelling by the ensemble's
model deviation (trust levels ``lo`` < ``hi``, a budget, never adjacent dumps of one trajectory:
:mod:`lamflow.ops.active.select`), and — for the baseline in the same run — as many frames drawn at random
from the same explorations. Writes the picks as extended XYZ (each frame with its branch, dump and
deviation) and reports every count and the accurate fraction the convergence check reads."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

from dflow.python import FatalError
from pydantic import Field, model_validator

from lamflow.ops.active.select import Frame, TrustLevels, random_picks, select
from lamflow.ops.collect import branch_folders
from lamflow.ops.dynamics.md import read_trajectory
from lamflow.ops.explore import TRAJECTORY
from lamflow.ops.runtime.common import work_dir, write_json
from lamflow.ops.runtime.contract import LamflowOP, OpModel

PICKED = "picked.extxyz"
RANDOM = "random.extxyz"
REPORT = "selection.json"


class SelectFramesParams(OpModel):
    lo: float = Field(gt=0, description="eV/Å: below it a frame is accurate.")
    hi: float = Field(gt=0, description="eV/Å: at or above it a frame failed.")
    max_picks: int = Field(ge=1, description="Labelling budget of this iteration.")
    random_baseline: bool = Field(False, description="Also draw max_picks frames at random (baseline).")
    seed: int = 0

    @model_validator(mode="after")
    def _levels(self) -> SelectFramesParams:
        TrustLevels(self.lo, self.hi)  # raises ValueError: 0 < lo < hi
        return self


class SelectFramesInput(SelectFramesParams):
    branches: Path = Field(description="Collected exploration branches.")
    deviations: Path = Field(description="The model-devi step's deviations.json.")


class SelectFramesOutput(OpModel):
    picked: Path = Field(description="Folder with picked.extxyz (and random.extxyz) and selection.json.")
    report: dict[str, Any]


def _deviation(value: float | None) -> float:
    return math.nan if value is None else float(value)


class SelectFramesOP(LamflowOP[SelectFramesInput, SelectFramesOutput]):
    """Frames to label, by deviation (and at random for the baseline)."""

    name = "select-frames"
    preload = ("ase.io",)
    Params = SelectFramesParams
    Input = SelectFramesInput
    Output = SelectFramesOutput

    def run(self, inp: SelectFramesInput) -> SelectFramesOutput:
        from ase.io import write

        deviations = json.loads(inp.deviations.read_text())
        trust = TrustLevels(inp.lo, inp.hi)
        frames: list[Frame] = []
        atoms_of: dict[tuple[str, int], Any] = {}
        for folder in branch_folders(inp.branches):
            if folder.name not in deviations:
                raise FatalError(f"select: no deviations for branch {folder.name!r}")
            branch = deviations[folder.name]
            atoms_list = read_trajectory(folder / TRAJECTORY)
            if len(atoms_list) != len(branch["max_devi_f"]):
                raise FatalError(
                    f"select: branch {folder.name!r} has {len(atoms_list)} frames, "
                    f"{len(branch['max_devi_f'])} deviations"
                )
            for dump, (atoms, value) in enumerate(zip(atoms_list, branch["max_devi_f"], strict=True)):
                frame = Frame(folder.name, dump, _deviation(value))
                frames.append(frame)
                atoms_of[(frame.trajectory, frame.dump)] = atoms
        chosen = select(frames, trust, inp.max_picks)
        out = work_dir() / "picked"
        out.mkdir(parents=True, exist_ok=True)
        _write_frames(out / PICKED, chosen.picked, atoms_of, write)
        report: dict[str, Any] = {
            **chosen.counts,
            "accurate_fraction": round(chosen.accurate_fraction, 6),
            "lo": inp.lo,
            "hi": inp.hi,
        }
        if inp.random_baseline:
            baseline = random_picks(frames, trust, len(chosen.picked), inp.seed)
            _write_frames(out / RANDOM, baseline, atoms_of, write)
            report["random_picked"] = len(baseline)
        write_json(out / REPORT, report)
        print("select-frames: " + ", ".join(f"{k} {v}" for k, v in report.items()))
        return SelectFramesOutput(picked=out, report=report)


def _write_frames(path: Path, picks: list[Frame], atoms_of: dict[tuple[str, int], Any], write: Any) -> None:
    """The picked frames, positions and cell only (the labeler computes the labels), each tagged."""
    out = []
    for frame in picks:
        atoms = atoms_of[(frame.trajectory, frame.dump)].copy()  # .copy() drops the driver's calculator
        atoms.info.update({"branch": frame.trajectory, "dump": frame.dump, "max_devi_f": frame.deviation})
        out.append(atoms)
    write(path, out, format="extxyz")
