"""Explore step: one MD branch (one temperature x one start structure) driven by the teacher through
DeePMD-kit's ASE calculator; writes the dumped frames (extxyz, teacher energies/forces/stress attached) and
a report. A branch that blows up is reported (and, when the spec says so, fails the step)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Literal

from dflow.python import FatalError
from pydantic import Field

from lamflow.ops.data.datasets import DatasetFormat, StagedDatasets, dataset_systems
from lamflow.ops.dp import ase_calculator
from lamflow.ops.dynamics.md import perturbed, read_frame, run_md
from lamflow.ops.runtime.common import work_dir, write_json
from lamflow.ops.runtime.contract import LamflowOP, OpModel

TRAJECTORY = "trajectory.extxyz"
REPORT = "report.json"


class StartStructure(OpModel):
    """Where a branch starts: frame ``frame`` of system ``system`` (index in the dataset's sorted systems),
    optionally the ``perturbed_copy``-th random perturbation of it."""

    dataset: str
    system: int = Field(ge=0)
    frame: int = Field(ge=0)
    perturbed_copy: int = Field(0, ge=0)


class Perturbation(OpModel):
    copies: int = Field(ge=1)
    cell_fraction: float = Field(ge=0)
    atom_distance: float = Field(ge=0)


class ExploreParams(OpModel):
    branch: str = Field(description="Name of this branch (its folder in the collected trajectories).")
    start: StartStructure
    temperature: float = Field(gt=0, description="K")
    ensemble: Literal["nvt", "npt"] = "nvt"
    pressure_bar: float = 1.0
    steps: int = Field(ge=1)
    timestep_fs: float = Field(gt=0)
    dump_every: int = Field(ge=1)
    friction: float = Field(0.01, gt=0, description="Langevin friction, 1/fs.")
    perturb: Perturbation | None = None
    min_distance: float = Field(gt=0, description="Å; closer atoms mean the MD blew up.")
    on_blowup: Literal["drop", "fail"] = "drop"
    seed: int = 0
    dataset_formats: dict[str, DatasetFormat]


class ExploreInput(ExploreParams, StagedDatasets):
    teacher: Path


class ExploreOutput(OpModel):
    branch: Path = Field(description="Folder <branch>/ with trajectory.extxyz and report.json.")
    report: dict[str, Any]


def start_atoms(inp: ExploreInput, scratch: Path) -> Any:
    systems = dataset_systems([inp.start.dataset], inp.datasets, inp.dataset_formats, scratch)
    if inp.start.system >= len(systems):
        raise FatalError(
            f"dataset {inp.start.dataset!r} has {len(systems)} systems, no system {inp.start.system}"
        )
    atoms = read_frame(systems[inp.start.system], inp.start.frame)
    if inp.perturb is not None:
        p = inp.perturb
        atoms = perturbed(atoms, p.copies, p.cell_fraction, p.atom_distance, inp.seed)[
            inp.start.perturbed_copy
        ]
    return atoms


class ExploreOP(LamflowOP[ExploreInput, ExploreOutput]):
    """MD at one temperature from one start structure; frames every ``dump_every`` steps."""

    name = "explore"
    preload = ("ase.io", "dpdata")
    Params = ExploreParams
    Input = ExploreInput
    Output = ExploreOutput

    def schedule(self, inp: ExploreInput) -> tuple[int, int]:
        """(MD steps, random seed) of this branch."""
        return inp.steps, inp.seed

    def run(self, inp: ExploreInput) -> ExploreOutput:
        from ase.io import write

        steps, seed = self.schedule(inp)
        inp = inp.model_copy(update={"steps": steps, "seed": seed})
        cwd = work_dir()
        atoms = start_atoms(inp, cwd / "systems")
        ensemble = inp.ensemble if all(atoms.pbc) else "nvt"  # NPT needs a cell
        result = run_md(
            atoms,
            ase_calculator(inp.teacher.resolve()),
            ensemble=ensemble,
            temperature=inp.temperature,
            steps=inp.steps,
            timestep_fs=inp.timestep_fs,
            dump_every=inp.dump_every,
            min_dist=inp.min_distance,
            seed=inp.seed,
            friction=inp.friction,
            pressure_bar=inp.pressure_bar,
        )
        where = (
            f"{inp.temperature:g} K from {inp.start.dataset} system {inp.start.system} "
            f"frame {inp.start.frame}"
            + (f" (perturbed copy {inp.start.perturbed_copy})" if inp.perturb is not None else "")
        )
        report: dict[str, Any] = {
            "branch": inp.branch,
            "start": where,
            "temperature": inp.temperature,
            "ensemble": ensemble,
            "natoms": len(atoms),
            "steps": inp.steps,
            "steps_done": result.steps_done,
            "frames": len(result.frames),
            "exploded": result.exploded_at is not None,
            "exploded_at_step": result.exploded_at,
            "reason": result.reason,
            "seconds": round(result.seconds, 3),
            "steps_per_s": round(result.steps_per_s, 3),
        }
        print(f"explore {inp.branch}: {where}: {result.steps_done}/{inp.steps} steps, "
              f"{len(result.frames)} frames, {result.steps_per_s:.1f} steps/s")  # fmt: skip
        if result.exploded_at is not None:
            message = f"MD at {where} blew up at step {result.exploded_at}: {result.reason}"
            if inp.on_blowup == "fail":
                raise FatalError(message + " (on_blowup: fail)")
            print(message + "; its frames are dropped (on_blowup: drop)")
        out = cwd / inp.branch
        out.mkdir(parents=True, exist_ok=True)
        write(out / TRAJECTORY, result.frames, format="extxyz")
        write_json(out / REPORT, report)
        return ExploreOutput(branch=out, report=json.loads(json.dumps(report)))
