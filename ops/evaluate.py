"""Evaluate step of a distillation: teacher, student and compressed student side by side on one DFT test
set — errors against the DFT labels and against the teacher, inference speed (µs/atom per evaluation,
same frames, same thread count, warm-up excluded) and NVE stability (total-energy drift in eV/atom/ps by
linear regression, exploded runs reported) — measured in this one step so the numbers are comparable."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
from pydantic import Field

from lamflow.ops.data.datasets import DatasetFormat, StagedDatasets, dataset_systems
from lamflow.ops.dp import ase_calculator, deep_potential
from lamflow.ops.dynamics.md import energy_drift, run_md
from lamflow.ops.evaluation.predict import SystemFrames, errors, load_systems, predict, time_per_atom
from lamflow.ops.runtime.common import work_dir, write_json
from lamflow.ops.runtime.contract import LamflowOP, OpModel

ROLES = ("teacher", "student", "compressed")


class NveParams(OpModel):
    steps: int = Field(ge=2)
    timestep_fs: float = Field(gt=0)
    temperature: float = Field(gt=0, description="K, of the initial velocities.")
    dump_every: int = Field(ge=1)
    structures: int = Field(ge=1, description="Start structures: the test set's first frames.")
    tolerance: float = Field(gt=0, description="eV/atom/ps: largest |drift| counted as stable.")
    min_distance: float = Field(gt=0, description="Å; closer atoms mean the run exploded.")


class EvaluateParams(OpModel):
    dataset: str
    frames: int = Field(0, ge=0, description="Frames per system (0 = all).")
    models: dict[str, str] = Field(description="Role (teacher/student/compressed) -> model reference.")
    repeats: int = Field(3, ge=1, description="Timed passes over the frames.")
    warmup: int = Field(1, ge=0, description="Untimed passes first.")
    threads: int = Field(1, ge=1, description="CPU threads for every model's evaluation.")
    nve: NveParams | None = None
    dataset_formats: dict[str, DatasetFormat]


class EvaluateInput(EvaluateParams, StagedDatasets):
    teacher: Path | None = None
    student: Path
    compressed: Path


class EvaluateOutput(OpModel):
    comparison: dict[str, dict[str, float]] = Field(description="Model reference -> its figures.")
    report: Path


@contextmanager
def threads(n: int) -> Iterator[None]:
    """The same intra-op thread count for every model (torch's, once a DeePMD-kit model loaded it), put
    back afterwards: a step worker runs later steps in this process."""
    torch = sys.modules.get("torch")
    if torch is None:
        yield
        return
    before = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def nve_figures(model_file: Path, systems: list[SystemFrames], nve: NveParams, seed: int) -> dict[str, float]:
    """Stability of one model: the largest |drift| over the start structures, whether every run stayed
    physical, and MD speed."""
    from ase import Atoms

    starts = [(s, i) for s in systems for i in range(s.nframes)][: nve.structures]
    calculator = ase_calculator(model_file)  # loaded once, for every start structure
    drifts, exploded, rates = [], 0, []
    for k, (system, frame) in enumerate(starts):
        atoms = Atoms(
            symbols=list(system.symbols),
            positions=system.coords[frame].reshape(-1, 3),
            cell=None if system.cells is None else system.cells[frame].reshape(3, 3),
            pbc=system.cells is not None,
        )
        result = run_md(
            atoms, calculator, ensemble="nve", temperature=nve.temperature, steps=nve.steps,
            timestep_fs=nve.timestep_fs, dump_every=nve.dump_every, min_dist=nve.min_distance, seed=seed + k,
        )  # fmt: skip
        rates.append(result.steps_per_s)
        if result.exploded_at is not None:
            exploded += 1
            print(
                f"NVE from {system.path} frame {frame} exploded at step {result.exploded_at}: {result.reason}"
            )
            continue
        drifts.append(energy_drift(result.total_energy))
    out = {
        "nve_runs": float(len(starts)),
        "nve_exploded": float(exploded),
        "md_steps_per_s": float(np.mean(rates)),
    }
    if drifts:
        worst = max(drifts, key=abs)
        out["nve_drift"] = worst
        out["nve_stable"] = float(exploded == 0 and abs(worst) <= nve.tolerance)
    else:
        out["nve_stable"] = 0.0
    return out


class EvaluateOP(LamflowOP[EvaluateInput, EvaluateOutput]):
    name = "evaluate"
    preload = ("ase.io", "dpdata")
    Params = EvaluateParams
    Input = EvaluateInput
    Output = EvaluateOutput

    def run(self, inp: EvaluateInput) -> EvaluateOutput:
        cwd = work_dir()
        systems = load_systems(
            dataset_systems([inp.dataset], inp.datasets, inp.dataset_formats, cwd / "systems"), inp.frames
        )
        files = {"teacher": inp.teacher, "student": inp.student, "compressed": inp.compressed}
        roles = [r for r in ROLES if files[r] is not None and r in inp.models]
        models = {r: deep_potential(Path(str(files[r])).resolve()) for r in roles}
        with threads(inp.threads):
            figures = self.figures(inp, roles, models, systems)
        if inp.nve is not None:
            for role in roles:
                figures[role].update(nve_figures(Path(str(files[role])).resolve(), systems, inp.nve, seed=7))
        return self.output(inp, roles, figures, cwd)

    @staticmethod
    def figures(inp: EvaluateInput, roles: list[str], models: dict, systems: list[SystemFrames]) -> dict:
        """Errors vs DFT and vs the teacher, and µs/atom, of every role."""
        preds = {r: [predict(models[r], s) for s in systems] for r in roles}
        figures: dict[str, dict[str, float]] = {}
        for role in roles:
            row = {"frames": float(sum(s.nframes for s in systems)), **errors(systems, preds[role])}
            if role != "teacher" and "teacher" in preds:
                row.update(
                    {f"{k}_vs_teacher": v for k, v in errors(systems, preds[role], preds["teacher"]).items()}
                )
            row["us_per_atom"] = time_per_atom(models[role], systems, inp.repeats, inp.warmup)
            figures[role] = row
        if "teacher" in figures:
            for role in roles:
                figures[role]["speedup_vs_teacher"] = (
                    figures["teacher"]["us_per_atom"] / figures[role]["us_per_atom"]
                )
        return figures

    @staticmethod
    def output(inp: EvaluateInput, roles: list[str], figures: dict, cwd: Path) -> EvaluateOutput:
        comparison = {inp.models[role]: {k: float(v) for k, v in figures[role].items()} for role in roles}
        report = write_json(
            cwd / "evaluation.json",
            {"dataset": inp.dataset, "threads": inp.threads, "roles": {r: inp.models[r] for r in roles},
             "models": comparison},
        )  # fmt: skip
        for role in roles:
            row = figures[role]
            e, f = row.get("energy_rmse_per_atom", float("nan")), row.get("force_rmse", float("nan"))
            print(f"{role:10s} {inp.models[role]:24s} E {e:.4e} eV/atom  F {f:.4e} eV/Å  "
                  f"{row['us_per_atom']:.1f} µs/atom")  # fmt: skip
        return EvaluateOutput(comparison=comparison, report=report)
