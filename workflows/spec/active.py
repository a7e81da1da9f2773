"""``stages.active`` — concurrent learning (dpgen2's loop): train an ensemble, explore with MD, select the
frames the ensemble disagrees on, label them (DFT with PySCF or an external code), retrain — until the
convergence criterion holds or ``max_iterations`` is reached. The number of iterations is decided at
run time."""

from __future__ import annotations

from typing import Annotated

from pydantic import Field, model_validator

from lamflow.workflows.spec.base import MAX_STEPS, Name, SpecModel, SpecPath
from lamflow.workflows.spec.distill import ExploreSpec, StudentArchitecture, TeacherSpec
from lamflow.workflows.spec.finetune import FinetuneFrom
from lamflow.workflows.spec.training import TrainingSpec

MAX_ENSEMBLE = 8
MAX_ITERATIONS = 50
# a container image reference: [registry[:port]/]path[:tag][@sha256:digest], as Docker/OCI spell them
ImageRef = Annotated[
    str,
    Field(
        pattern=r"^[a-z0-9]+([._-][a-z0-9]+)*(:[0-9]+)?(/[a-z0-9]+([._-]{1,2}[a-z0-9]+)*)*(:[A-Za-z0-9_][A-Za-z0-9._-]{0,127})?(@sha256:[a-f0-9]{64})?$",
        max_length=255,
    ),
]
MAX_LABEL_STEPS = 8  # the merge step's fan-in (ops/merge_labels.py: MAX_PARTS)
MAX_PICKS = 10_000


class ActiveExploreSpec(ExploreSpec):
    steps_by_iteration: list[int] = Field(
        default_factory=list,
        description="MD steps in iterations 1, 2, ... (the last value repeats: dpgen2's growing stages); "
        "empty: `steps` in every iteration.",
    )

    @model_validator(mode="after")
    def _steps(self) -> ActiveExploreSpec:
        for value in self.steps_by_iteration:
            if not 1 <= value <= MAX_STEPS:
                raise ValueError(f"steps_by_iteration: {value} is not a step count from 1 to {MAX_STEPS}")
        return self


class ActiveSelectSpec(SpecModel):
    lo: float = Field(
        gt=0, le=100, description="eV/Å: a frame whose max force deviation is below it is accurate."
    )
    hi: float = Field(gt=0, le=1000, description="eV/Å: at or above it the frame failed (not labelled).")
    max_picks: int = Field(10, ge=1, le=MAX_PICKS, description="Frames labelled per iteration at most.")
    random_baseline: bool = Field(
        False,
        description="Also draw as many frames at random from the same explorations and report whether "
        "selection by deviation beat them (labelled and tested in the same run).",
    )


class PyscfLabelerSpec(SpecModel):
    functional: str = Field("pbe", min_length=1, description="PySCF's exchange-correlation functional name.")
    basis: str = Field("6-31g*", min_length=1, description="PySCF basis set name.")
    charge: int = Field(0, ge=-10, le=10)
    spin: int = Field(0, ge=0, le=20, description="2S: the number of unpaired electrons.")
    scf_cycles: int = Field(50, ge=1, le=1000)


class CommandLabelerSpec(SpecModel):
    command: str = Field(min_length=1, description="Run by the shell in each frame's folder.")
    input_format: str = Field(description="dpdata format each frame is written in, e.g. vasp/poscar.")
    input_file: str = Field(min_length=1, description="e.g. POSCAR.")
    output_format: str = Field(description="dpdata format the labels are read from, e.g. vasp/outcar.")
    output_file: str = Field(min_length=1, description="e.g. OUTCAR.")
    template: SpecPath | None = Field(
        None, description="A folder copied into every frame's folder (INCAR...)."
    )
    timeout_s: float | None = Field(None, gt=0, le=7 * 86400)
    image: ImageRef | None = Field(
        None,
        description="On Argo: the image the label steps run in — your DFT code with lamflow added "
        "(images/Dockerfile.labeler builds one from your DFT image); default: the steps' image. The local "
        "engine runs the command on this machine.",
    )


class LabelerSpec(SpecModel):
    pyscf: PyscfLabelerSpec | None = Field(None, description="DFT with PySCF (molecules).")
    command: CommandLabelerSpec | None = Field(None, description="An external DFT code run as a command.")
    teacher: TeacherSpec | None = Field(
        None, description="Distillation: a model of this spec or a frozen .pth file whose predictions label."
    )
    parallel: int = Field(
        1,
        ge=1,
        le=MAX_LABEL_STEPS,
        description="Label steps per iteration, the picks dealt among them in turn: side by side on this "
        "machine as its cores allow, one pod each on Argo.",
    )

    @model_validator(mode="after")
    def _one(self) -> LabelerSpec:
        if sum(x is not None for x in (self.pyscf, self.command, self.teacher)) != 1:
            raise ValueError("give exactly one labeler: pyscf, command or teacher")
        return self


class ConvergeSpec(SpecModel):
    accurate_fraction: float | None = Field(
        None, gt=0, le=1, description="Converged when this share of explored frames is accurate (dpgen2)."
    )
    test_force_rmse: float | None = Field(
        None,
        gt=0,
        le=100,
        description="eV/Å: converged when the held-out force RMSE is at most this (PFD-kit).",
    )
    max_iterations: int = Field(5, ge=1, le=MAX_ITERATIONS, description="Stop here, converged or not.")


class ActiveSpec(SpecModel):
    name: Name = Field(description="Model reference active.<name>; step keys active-<name>-i<nnn>-*.")
    from_: FinetuneFrom = Field(
        default_factory=FinetuneFrom,
        alias="from",
        description="The checkpoint every ensemble member fine-tunes from (default: the pretrain stage's).",
    )
    student: StudentArchitecture | None = Field(
        None,
        description="Members are students trained from scratch with this model, not fine-tunes (distillation "
        "with a teacher labeler); instead of `from`. The loop's `training` trains them.",
    )
    datasets: list[Name] = Field(min_length=1, description="Labelled data to start from (train parts).")
    test: Name | None = Field(None, description="Held-out dataset tested every iteration (its test part).")
    ensemble: int = Field(
        4, ge=2, le=MAX_ENSEMBLE, description="Models trained per iteration (seeds differ)."
    )
    training: TrainingSpec = Field(default_factory=TrainingSpec)
    init_from_previous: bool = Field(
        False,
        description="From iteration 2 on, each ensemble member fine-tunes its own checkpoint of the previous "
        "iteration (dpgen2's init-model policy) instead of `from`.",
    )
    explore: ActiveExploreSpec
    select: ActiveSelectSpec
    label: LabelerSpec
    converge: ConvergeSpec = Field(default_factory=ConvergeSpec)

    @model_validator(mode="after")
    def _members(self) -> ActiveSpec:
        if self.student is not None and "from_" in self.model_fields_set:
            raise ValueError("give `from` (members fine-tune a checkpoint) or `student` (members train from "
                             "scratch), not both")  # fmt: skip
        return self
