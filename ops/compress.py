"""Compress step: ``dp --pt compress`` of a frozen model, then the drift check — the compressed model's
energies and forces against the uncompressed one's on a dataset's frames must stay within the spec's
tolerances, else the step fails naming both numbers."""

from __future__ import annotations

from pathlib import Path

from dflow.python import FatalError
from pydantic import Field

from lamflow.ops.data.datasets import DatasetFormat, StagedDatasets, dataset_systems
from lamflow.ops.dp import compress_command, deep_potential
from lamflow.ops.evaluation.predict import errors, load_systems, predict
from lamflow.ops.runtime.common import run_dp_step, work_dir
from lamflow.ops.runtime.contract import LamflowOP, OpModel

COMPRESSED_MODEL = "model-compressed.pth"
COMPRESS_LOG = "compress.log"


class CompressParams(OpModel):
    step: float = Field(0.01, gt=0)
    extrapolate: int = Field(5, ge=1)
    frequency: int = Field(-1, ge=-1)
    dataset: str = Field(description="The staged dataset whose frames the drift is measured on.")
    frames: int = Field(0, ge=0, description="Frames per system (0 = all).")
    max_energy_drift: float = Field(gt=0, description="eV/atom: energy RMSE compressed vs uncompressed.")
    max_force_drift: float = Field(gt=0, description="eV/Å: force RMSE compressed vs uncompressed.")
    dataset_formats: dict[str, DatasetFormat]


class CompressInput(CompressParams, StagedDatasets):
    model: Path


class CompressOutput(OpModel):
    model: Path
    log: Path
    metrics: dict[str, float] = Field(description="energy/force drift, frames, model sizes (bytes).")


class CompressOP(LamflowOP[CompressInput, CompressOutput]):
    name = "compress"
    Params = CompressParams
    Input = CompressInput
    Output = CompressOutput

    def run(self, inp: CompressInput) -> CompressOutput:
        cwd = work_dir()
        source = inp.model.resolve()
        argv = compress_command(
            source, COMPRESSED_MODEL, step=inp.step, extrapolate=inp.extrapolate, frequency=inp.frequency
        )
        run_dp_step(argv, cwd, COMPRESS_LOG)
        compressed = cwd / COMPRESSED_MODEL
        systems = load_systems(
            dataset_systems([inp.dataset], inp.datasets, inp.dataset_formats, cwd / "systems"), inp.frames
        )
        before, after = deep_potential(source), deep_potential(compressed)
        drift = errors(systems, [predict(after, s) for s in systems], [predict(before, s) for s in systems])
        metrics = {
            "energy_drift_per_atom": drift["energy_rmse_per_atom"],
            "force_drift": drift["force_rmse"],
            "frames": float(sum(s.nframes for s in systems)),
            "size_bytes": float(source.stat().st_size),
            "compressed_size_bytes": float(compressed.stat().st_size),
        }
        print(
            f"drift on {inp.dataset}: energy {metrics['energy_drift_per_atom']:.3e} eV/atom "
            f"(max {inp.max_energy_drift:g}), force {metrics['force_drift']:.3e} eV/Å "
            f"(max {inp.max_force_drift:g})"
        )
        e, f = metrics["energy_drift_per_atom"], metrics["force_drift"]
        if e > inp.max_energy_drift or f > inp.max_force_drift:
            raise FatalError(
                f"compressed model drifts from the uncompressed one on {inp.dataset}: "
                f"energy RMSE {e:.3e} eV/atom (tolerance {inp.max_energy_drift:g}), "
                f"force RMSE {f:.3e} eV/Å (tolerance {inp.max_force_drift:g}); "
                "raise the tolerance or use a smaller compress step"
            )
        return CompressOutput(model=compressed, log=cwd / COMPRESS_LOG, metrics=metrics)
