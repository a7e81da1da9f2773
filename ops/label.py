"""Label step: select frames from the collected exploration branches and label them with the teacher.

Selection, in order, each drop counted by reason: every frame of a branch whose MD blew up; all but every
``stride``-th frame; frames with non-finite energy/forces, atoms closer than ``min_distance`` or a force
above ``max_force``; near-duplicates (RMS displacement from the branch's last kept frame below
``duplicate_rmsd``); then an even thinning down to ``max_frames``. Labels are the teacher's energies,
forces and (periodic frames) virials, written with dpdata as deepmd/npy systems (one per composition) with
the teacher's type map: ``train/`` and, when ``validation_fraction`` > 0, ``valid/``.
"""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np
from dflow.python import FatalError
from pydantic import Field

from lamflow.ops.collect import branch_folders
from lamflow.ops.data.labelled import indices_by_kind, labelled_system
from lamflow.ops.dp import deep_potential
from lamflow.ops.dynamics.md import frame_problem, read_trajectory
from lamflow.ops.evaluation.predict import atom_types
from lamflow.ops.explore import REPORT, TRAJECTORY
from lamflow.ops.runtime.common import work_dir, write_json
from lamflow.ops.runtime.contract import LamflowOP, OpModel

DROP_REASONS = (
    "exploded_branch",
    "stride",
    "non_finite",
    "too_close",
    "max_force",
    "duplicate",
    "max_frames",
)


class SelectParams(OpModel):
    stride: int = Field(1, ge=1)
    max_frames: int = Field(0, ge=0, description="0 = no limit.")
    min_distance: float = Field(0.5, gt=0)
    max_force: float | None = Field(None, gt=0, description="eV/Å; None = no limit.")
    duplicate_rmsd: float = Field(0.0, ge=0, description="Å; 0 keeps near-duplicates.")


def rms_displacement(a: Any, b: Any) -> float:
    """RMS of the atoms' displacement between two frames of one trajectory, centre-of-mass drift removed."""
    d = np.asarray(a.positions) - np.asarray(b.positions)
    d -= d.mean(axis=0)
    return float(np.sqrt(np.mean(np.sum(d * d, axis=1))))


def select(
    branches: list[tuple[dict[str, Any], list[Any]]], params: SelectParams
) -> tuple[list[Any], dict[str, int]]:
    """The frames kept from ``(report, frames)`` per branch, and how many were dropped for each reason."""
    counts = Counter({reason: 0 for reason in DROP_REASONS})
    kept: list[Any] = []
    dumped = 0
    for report, frames in branches:
        dumped += len(frames)
        if report.get("exploded"):
            counts["exploded_branch"] += len(frames)
            continue
        last: Any = None
        for index, atoms in enumerate(frames):
            if index % params.stride:
                counts["stride"] += 1
                continue
            energy = float(atoms.get_potential_energy())
            forces = np.asarray(atoms.get_forces())
            problem = frame_problem(atoms, energy, forces, params.min_distance)
            if problem is not None:
                counts["non_finite" if problem.startswith("non-finite") else "too_close"] += 1
                continue
            if params.max_force is not None and float(np.abs(forces).max(initial=0.0)) > params.max_force:
                counts["max_force"] += 1
                continue
            if (
                last is not None
                and params.duplicate_rmsd > 0
                and rms_displacement(atoms, last) < params.duplicate_rmsd
            ):
                counts["duplicate"] += 1
                continue
            kept.append(atoms)
            last = atoms
    if params.max_frames and len(kept) > params.max_frames:
        chosen = np.unique(np.linspace(0, len(kept) - 1, params.max_frames).round().astype(int))
        counts["max_frames"] += len(kept) - len(chosen)
        kept = [kept[i] for i in chosen]
    return kept, {"dumped": dumped, **counts, "kept": len(kept)}


def read_branches(folder: Path) -> list[tuple[dict[str, Any], list[Any]]]:
    return [
        (json.loads((branch / REPORT).read_text()), read_trajectory(branch / TRAJECTORY))
        for branch in branch_folders(folder)
    ]


def _system_name(symbols: tuple[str, ...], pbc: bool) -> str:
    counts = Counter(symbols)
    return "".join(f"{el}{counts[el]}" for el in sorted(counts)) + ("" if pbc else "-nopbc")


def write_labels(frames: list[Any], teacher: Any, type_map: list[str], out: Path) -> dict[str, int]:
    """Teacher labels of ``frames`` as deepmd/npy systems under ``out`` (one per composition and
    periodicity); returns frames per system."""
    written: dict[str, int] = {}
    for (symbols, pbc), indices in sorted(indices_by_kind(frames).items()):
        members = [frames[i] for i in indices]
        try:
            types = atom_types(teacher, symbols)
        except ValueError as exc:
            raise FatalError(f"the teacher: {exc}") from None
        coords = np.stack([a.positions for a in members])
        cells = np.stack([np.asarray(a.cell) for a in members]) if pbc else None
        energy, force, virial = teacher.eval(
            coords.reshape(len(members), -1), None if cells is None else cells.reshape(len(members), 9), types
        )[:3]
        system = labelled_system(type_map, types, coords, energy, force, cells, virial)
        name = _system_name(symbols, pbc)
        system.to("deepmd/npy", str(out / name))
        written[name] = len(members)
    return written


class LabelParams(SelectParams):
    validation_fraction: float = Field(0.1, ge=0, lt=1, description="Frames per system held out as valid/.")
    seed: int = 0


class LabelInput(LabelParams):
    branches: Path
    teacher: Path


class LabelOutput(OpModel):
    labels: Path = Field(description="train/ (and valid/) deepmd/npy systems with the teacher's labels.")
    report: dict[str, Any]


def split(frames: list[Any], fraction: float, seed: int) -> tuple[list[Any], list[Any]]:
    """(train, valid) per composition: ``fraction`` of each composition's frames (at least one when it has
    two or more) go to valid, chosen with ``seed``."""
    if fraction <= 0:
        return list(frames), []
    rng = np.random.default_rng(seed)
    valid: set[int] = set()
    for indices in indices_by_kind(frames).values():
        if len(indices) < 2:
            continue
        n = max(1, int(round(fraction * len(indices))))
        valid.update(int(i) for i in rng.choice(indices, size=n, replace=False))
    return [f for i, f in enumerate(frames) if i not in valid], [
        f for i, f in enumerate(frames) if i in valid
    ]


class LabelOP(LamflowOP[LabelInput, LabelOutput]):
    name = "label"
    preload = ("ase.io", "dpdata")
    Params = LabelParams
    Input = LabelInput
    Output = LabelOutput

    def run(self, inp: LabelInput) -> LabelOutput:
        cwd = work_dir()
        branches = read_branches(inp.branches)
        kept, counts = select(branches, inp)
        exploded = [r.get("start", r.get("branch")) for r, _ in branches if r.get("exploded")]
        if not kept:
            raise FatalError(
                "no frames left after selection ("
                + ", ".join(f"{k} {v}" for k, v in counts.items() if v)
                + "): nothing to train the student on; explore longer or loosen the selection"
            )
        teacher = deep_potential(inp.teacher.resolve())
        type_map = list(teacher.get_type_map())
        train, valid = split(kept, inp.validation_fraction, inp.seed)
        out = cwd / "labels"
        report: dict[str, Any] = {
            **counts,
            "branches": len(branches),
            "exploded_branches": exploded,
            "type_map": type_map,
            "train": write_labels(train, teacher, type_map, out / "train"),
        }
        if valid:
            report["valid"] = write_labels(valid, teacher, type_map, out / "valid")
        write_json(out / "selection.json", report)
        print("selection: " + ", ".join(f"{k} {v}" for k, v in counts.items()))
        return LabelOutput(labels=out, report=report)
