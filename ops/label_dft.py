"""DFT-label step of the concurrent-learning loop: the frames the select step picked (``picked.extxyz``)
labelled by a reference method — PySCF (molecules, :mod:`lamflow.ops.labeling.pyscf_dft`) or an external
DFT code run as a command line (:mod:`lamflow.ops.labeling.command`) — and written as deepmd/npy systems
(one per composition and periodicity) in the spec's type map. With ``shares`` > 1 the picks are dealt
among that many label steps (fan-out), this one labelling every ``shares``-th frame from ``share``; the merge
step gathers them. Frames that could not be labelled are
counted, never labelled; a step that labels none of its frames fails with the counts (what earlier
iterations labelled is kept by them)."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from dflow.python import FatalError
from pydantic import Field

from lamflow.ops.data.labelled import indices_by_kind
from lamflow.ops.dp import deep_potential
from lamflow.ops.dynamics.md import read_trajectory
from lamflow.ops.label import write_labels
from lamflow.ops.labeling.command import CommandLabeler
from lamflow.ops.labeling.command import label_frames as command_labels
from lamflow.ops.labeling.pyscf_dft import PyscfSettings, write_system
from lamflow.ops.labeling.pyscf_dft import label_frames as pyscf_labels
from lamflow.ops.runtime.common import work_dir, write_json
from lamflow.ops.runtime.contract import LamflowOP, OpModel
from lamflow.ops.select_frames import PICKED, RANDOM

ERRORS_SHOWN = 5
COUNTS = ("frames", "labelled", "not_converged", "failed")  # of a label step's report (summed by the merge)
REPORT = "label-report.json"  # in the labels folder, beside the systems


class PyscfParams(OpModel):
    functional: str = "pbe"
    basis: str = "6-31g*"
    charge: int = 0
    spin: int = Field(0, ge=0, description="2S: the number of unpaired electrons.")
    scf_cycles: int = Field(50, ge=1)


class CommandParams(OpModel):
    command: str = Field(description="Run by the shell in each frame's folder.")
    input_format: str
    input_file: str
    output_format: str
    output_file: str
    timeout_s: float | None = Field(None, gt=0)


class LabelDftParams(OpModel):
    labeler: Literal["pyscf", "command", "teacher"]
    frames: Literal["picked", "random"] = Field(
        "picked", description="Label the frames picked by deviation, or those drawn at random (the baseline)."
    )
    pyscf: PyscfParams | None = None
    command: CommandParams | None = None
    type_map: list[str] = Field(min_length=1)
    share: int = Field(1, ge=1, description="Which of the `shares` label steps this is (1-based).")
    shares: int = Field(
        1, ge=1, description="Label steps of one iteration: step k labels frames k-1, k-1+n ..."
    )


class LabelDftInput(LabelDftParams):
    picked: Path = Field(description="The select step's folder (picked.extxyz).")
    template: Path | None = Field(None, description="Files copied beside every frame (command labeler).")
    teacher: Path | None = Field(
        None, description="A frozen model whose predictions are the labels (teacher)."
    )


class LabelDftOutput(OpModel):
    labels: Path = Field(description="deepmd/npy systems, one per composition and periodicity.")
    report: dict[str, Any]


class LabelDftOP(LamflowOP[LabelDftInput, LabelDftOutput]):
    """Reference labels for the picked frames."""

    name = "label-dft"
    preload = ("ase.io", "dpdata")
    Params = LabelDftParams
    Input = LabelDftInput
    Output = LabelDftOutput

    def run(self, inp: LabelDftInput) -> LabelDftOutput:
        source = inp.picked / (PICKED if inp.frames == "picked" else RANDOM)
        if not source.is_file():
            raise FatalError(f"label-dft: the select step wrote no {source.name}")
        if inp.share > inp.shares:
            raise FatalError(f"label-dft: share {inp.share} of {inp.shares} does not exist")
        atoms_list = read_trajectory(source)[inp.share - 1 :: inp.shares]  # this step's share of the picks
        out = work_dir() / "labels"
        out.mkdir(parents=True, exist_ok=True)
        counts = {**dict.fromkeys(COUNTS, 0), "frames": len(atoms_list)}
        errors: list[str] = []
        if inp.labeler == "teacher":  # distillation: the teacher's predictions, every frame
            if inp.teacher is None:
                raise FatalError("label-dft: the teacher labeler needs its teacher model")
            if atoms_list:
                write_labels(atoms_list, deep_potential(inp.teacher.resolve()), inp.type_map, out)
            counts["labelled"] = len(atoms_list)
        groups = [] if inp.labeler == "teacher" else sorted(indices_by_kind(atoms_list).items())
        for n, ((symbols, _), indices) in enumerate(groups):
            frames = [atoms_list[i] for i in indices]
            target = out / f"system-{n:03d}"
            if inp.labeler == "pyscf":
                found, failed = self._pyscf(inp, symbols, frames, target)
            else:
                found, failed = self._command(inp, frames, target, work_dir() / f"dft-{n:03d}")
            counts["labelled"] += found.counts["labelled"]
            counts["not_converged"] += found.counts.get("not_converged", 0)
            counts["failed"] += found.counts["failed"]
            formula = frames[0].get_chemical_formula()
            errors += [f"{formula} {e}" for e in failed]
        report: dict[str, Any] = {**counts, "labeler": inp.labeler, "errors": errors[:ERRORS_SHOWN]}
        if inp.shares > 1:
            report["share"] = f"{inp.share}/{inp.shares}"
        write_json(out / REPORT, report)
        print("label-dft: " + ", ".join(f"{k} {counts[k]}" for k in counts))
        if atoms_list and counts["labelled"] == 0:
            shown = "; ".join(errors[:ERRORS_SHOWN])
            raise FatalError(
                f"label-dft: none of {counts['frames']} frames labelled ({counts['not_converged']} SCFs "
                f"did not converge, {counts['failed']} failed)" + (f": {shown}" if shown else "")
            )
        return LabelDftOutput(labels=out, report=report)

    @staticmethod
    def _pyscf(inp: LabelDftInput, symbols: tuple[str, ...], frames: list[Any], target: Path) -> Any:
        if any(bool(a.pbc.any()) for a in frames):
            raise FatalError("label-dft: the PySCF labeler labels molecules; these frames have a cell")
        settings = PyscfSettings(**(inp.pyscf or PyscfParams()).model_dump())
        coords = [a.positions for a in frames]
        labels = pyscf_labels(symbols, coords, settings)
        write_system(target, symbols, coords, labels, inp.type_map)
        return labels, labels.errors

    @staticmethod
    def _command(inp: LabelDftInput, frames: list[Any], target: Path, work: Path) -> Any:
        import dpdata

        if inp.command is None:
            raise FatalError("label-dft: the command labeler needs its command settings")
        system = dpdata.System(frames[0], fmt="ase/structure")
        for atoms in frames[1:]:
            system.append(dpdata.System(atoms, fmt="ase/structure"))
        labels = command_labels(
            system, CommandLabeler(**inp.command.model_dump(), template=inp.template), work
        )
        if labels.systems:
            dpdata.MultiSystems(*labels.systems, type_map=list(inp.type_map)).to("deepmd/npy", str(target))
        return labels, labels.errors
