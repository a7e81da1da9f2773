"""``stages.distill`` — teacher-driven MD exploration, frame selection, teacher labels and a compressible
student."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import Field, model_validator

from lamflow.workflows.spec.base import MAX_FRAMES, MAX_SEED, MAX_STEPS, ModelRef, Name, SpecModel, SpecPath
from lamflow.workflows.spec.training import TrainingSpec

StudentPreset = Literal["se_e2_a", "se_e2_a-tiny", "se_atten_v2", "se_atten_v2-tiny"]
Temperature = Annotated[float, Field(gt=0, le=100_000)]


class TeacherSpec(SpecModel):
    model: ModelRef | None = Field(
        None, description="A model of this spec: 'finetune.<name>', 'pretrain.<head>', 'distill.<name>'."
    )
    model_file: SpecPath | None = Field(
        None, description="An external frozen DeePMD-kit model (.pth), relative to the spec file."
    )

    @model_validator(mode="after")
    def _one_source(self) -> TeacherSpec:
        if (self.model is None) == (self.model_file is None):
            raise ValueError("give exactly one of model (a model of this spec) or model_file (a .pth file)")
        return self


class PerturbSpec(SpecModel):
    copies: int = Field(1, ge=1, le=100, description="Perturbed copies of each start structure.")
    cell_fraction: float = Field(0.03, ge=0, le=0.5, description="Largest relative cell strain (periodic).")
    atom_distance: float = Field(0.1, ge=0, le=2.0, description="Atom displacement scale, Å.")


class ExploreSpec(SpecModel):
    datasets: list[Name] = Field(min_length=1, description="Datasets whose frames start the MD runs.")
    frames_per_system: int = Field(
        1, ge=1, le=1000, description="Start frames taken per system (evenly spaced)."
    )
    temperatures: list[Temperature] = Field(min_length=1, description="K; one NVT/NPT run per temperature.")
    ensemble: Literal["nvt", "npt"] = Field(
        "nvt", description="nvt: Langevin; npt: Berendsen barostat (periodic structures only)."
    )
    pressure_bar: float = Field(1.0, ge=0, le=1e7)
    steps: int = Field(200, ge=1, le=MAX_STEPS)
    timestep_fs: float = Field(0.5, gt=0, le=10)
    dump_every: int = Field(10, ge=1, le=MAX_STEPS, description="Keep every N-th MD step as a frame.")
    friction: float = Field(0.01, gt=0, le=10, description="Langevin friction, 1/fs.")
    perturb: PerturbSpec | None = Field(None, description="Random perturbation of the start structures.")
    on_blowup: Literal["drop", "fail"] = Field(
        "drop", description="MD that blows up: drop that run's frames (counted) or fail the run."
    )
    seed: int = Field(1, ge=0, le=MAX_SEED)


class SelectSpec(SpecModel):
    stride: int = Field(1, ge=1, le=MAX_FRAMES, description="Keep every N-th dumped frame.")
    max_frames: int = Field(0, ge=0, le=MAX_FRAMES, description="At most this many frames (0 = all).")
    min_distance: float = Field(0.5, gt=0, le=10, description="Å; frames with closer atoms are dropped.")
    max_force: float | None = Field(None, gt=0, description="eV/Å; frames with a larger force are dropped.")
    duplicate_rmsd: float = Field(
        0.0, ge=0, le=10, description="Å; a frame this close (RMS) to the last kept one is dropped."
    )
    validation_fraction: float = Field(
        0.1, ge=0, lt=1, description="Share of the labelled frames held out to validate the student."
    )


class StudentArchitecture(SpecModel):
    """A student's model, trained from scratch: a compressible preset and fragments merged over it."""

    preset: StudentPreset = Field(
        "se_e2_a",
        description="Compressible descriptor: se_e2_a or se_atten_v2 (DPA-1 without attention), sized as "
        "DeePMD-kit's examples; *-tiny for CPU demos.",
    )
    descriptor: dict[str, Any] = Field(default_factory=dict, description="Deep-merged over the preset.")
    fitting_net: dict[str, Any] = Field(default_factory=dict, description="Deep-merged over the preset.")


class StudentSpec(StudentArchitecture):
    training: TrainingSpec = Field(default_factory=TrainingSpec)


class DistillSpec(SpecModel):
    name: Name = Field(description="Model reference distill.<name>; step keys *-<name>.")
    teacher: TeacherSpec
    explore: ExploreSpec
    select: SelectSpec = Field(default_factory=SelectSpec)
    student: StudentSpec = Field(default_factory=StudentSpec)
