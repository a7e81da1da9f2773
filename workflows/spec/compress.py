"""``stages.compress`` — ``dp --pt compress`` of a model, its drift check and (optionally) the evaluation of
teacher, student and compressed student side by side."""

from __future__ import annotations

from pydantic import Field

from lamflow.workflows.spec.base import MAX_FRAMES, MAX_STEPS, ModelRef, Name, SpecModel


class DriftSpec(SpecModel):
    dataset: Name = Field(description="Frames the compressed and uncompressed models are compared on.")
    frames: int = Field(0, ge=0, le=MAX_FRAMES, description="Frames per system (0 = all).")
    energy_rmse_per_atom: float = Field(1e-4, gt=0, description="Tolerance, eV/atom.")
    force_rmse: float = Field(1e-3, gt=0, description="Tolerance, eV/Å.")


class NveSpec(SpecModel):
    steps: int = Field(200, ge=2, le=MAX_STEPS)
    timestep_fs: float = Field(0.5, gt=0, le=10)
    temperature: float = Field(300.0, gt=0, le=100_000, description="K, of the initial velocities.")
    dump_every: int = Field(5, ge=1, le=MAX_STEPS, description="Energy samples for the regression.")
    structures: int = Field(1, ge=1, le=1000, description="Start structures: the test set's first frames.")
    tolerance: float = Field(
        5e-4, gt=0, description="eV/atom/ps; LAMBench's 5e-4 comes from 10 ps runs — short runs are noisier."
    )
    min_distance: float = Field(0.5, gt=0, le=10, description="Å; closer atoms count as an explosion.")


class EvaluateSpec(SpecModel):
    dataset: Name = Field(description="DFT test set: errors, speed and NVE start structures come from it.")
    frames: int = Field(0, ge=0, le=MAX_FRAMES, description="Frames per system (0 = all).")
    repeats: int = Field(3, ge=1, le=1000, description="Timed passes over the frames.")
    warmup: int = Field(1, ge=0, le=1000, description="Untimed passes first.")
    threads: int = Field(1, ge=1, le=1024, description="CPU threads, the same for every model.")
    nve: NveSpec | None = Field(default_factory=NveSpec, description="NVE stability run; null to skip.")


class CompressSpec(SpecModel):
    name: Name = Field(description="Model reference compress.<name>; step keys compress-<name>, ...")
    model: ModelRef = Field(description="The model to compress, typically distill.<name>.")
    step: float = Field(0.01, gt=0, le=1, description="Table stride (dp compress -s).")
    extrapolate: int = Field(5, ge=1, le=100, description="Table range factor (dp compress -e).")
    frequency: int = Field(-1, ge=-1, le=MAX_STEPS, description="Overflow check frequency (-1 = none).")
    drift: DriftSpec
    evaluate: EvaluateSpec | None = Field(
        None,
        description="Teacher (when the model is distill.<name>), uncompressed and compressed model on a "
        "DFT test set: errors, µs/atom, NVE drift.",
    )
