"""Labels from an external DFT code (VASP, ABACUS, CP2K, Quantum ESPRESSO...) run as a command line: each
frame is written with dpdata in the code's input format into a folder of its own, beside the files of a
user template (INCAR, KPOINTS, POTCAR; pseudopotentials; a CP2K input...); the command runs there; the
labels are read back with dpdata from the code's output. dpdata converts to eV and eV/Å.

A frame whose command exits non-zero, runs past ``timeout_s``, or leaves no readable labelled frame (or
one with another atom count) is counted as ``failed``, with the reason and the tail of its log; the others
are labelled. Nothing here knows a DFT code: the formats are dpdata's names (``vasp/poscar`` and
``vasp/outcar``, ``abacus/stru`` and ``abacus/scf``, ``qe/pw/scf``, ``cp2k/output``...).
"""

from __future__ import annotations

import shutil
import subprocess
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

LOG = "label.log"
TAIL_LINES = 5


@dataclass(frozen=True)
class CommandLabeler:
    command: str  # run by the shell in each frame's folder, e.g. "mpirun -np 4 vasp_std"
    input_format: str  # dpdata format the frame is written in, e.g. "vasp/poscar"
    input_file: str  # the file it goes to, e.g. "POSCAR"
    output_format: str  # dpdata format the labels are read from, e.g. "vasp/outcar"
    output_file: str  # e.g. "OUTCAR"
    template: Path | None = None  # a folder whose files are copied into every frame's folder
    timeout_s: float | None = None


@dataclass
class CommandLabels:
    """The labelled frames (indices into the input system) as dpdata LabeledSystems, and the counts."""

    frames: list[int] = field(default_factory=list)
    systems: list[Any] = field(default_factory=list)
    counts: dict[str, int] = field(default_factory=lambda: {"labelled": 0, "failed": 0})
    errors: list[str] = field(default_factory=list)


def _tail(path: Path) -> str:
    lines = path.read_text(errors="replace").splitlines() if path.is_file() else []
    return " | ".join(line.strip() for line in lines[-TAIL_LINES:] if line.strip())


def label_frame(system: Any, index: int, labeler: CommandLabeler, folder: Path) -> Any:
    """Frame ``index`` of the dpdata ``system`` labelled in ``folder``: a LabeledSystem of one frame.
    Raises RuntimeError saying why not."""
    import dpdata

    folder.mkdir(parents=True, exist_ok=True)
    if labeler.template is not None:
        for item in sorted(labeler.template.iterdir()):
            if item.is_file():
                shutil.copy2(item, folder / item.name)
    system.sub_system([index]).to(labeler.input_format, str(folder / labeler.input_file))
    with (folder / LOG).open("w") as log:
        try:
            done = subprocess.run(
                labeler.command, shell=True, cwd=folder, stdout=log, stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL, timeout=labeler.timeout_s, check=False,
            )  # fmt: skip
        except subprocess.TimeoutExpired:
            raise RuntimeError(f"no labels after {labeler.timeout_s:g} s (timeout_s)") from None
    if done.returncode != 0:
        raise RuntimeError(f"`{labeler.command}` exited with {done.returncode}: {_tail(folder / LOG)}")
    output = folder / labeler.output_file
    if not output.exists():
        raise RuntimeError(f"`{labeler.command}` wrote no {labeler.output_file}: {_tail(folder / LOG)}")
    try:
        labelled = dpdata.LabeledSystem(str(output), fmt=labeler.output_format)
    except Exception as exc:  # dpdata's readers raise anything on a truncated or foreign file
        raise RuntimeError(f"{labeler.output_file} is not {labeler.output_format}: {exc}") from None
    if labelled.get_nframes() < 1 or "energies" not in labelled.data or "forces" not in labelled.data:
        raise RuntimeError(f"{labeler.output_file} holds no labelled frame")
    if labelled.get_natoms() != system.get_natoms():
        raise RuntimeError(
            f"{labeler.output_file} has {labelled.get_natoms()} atoms, the frame {system.get_natoms()}"
        )
    return labelled.sub_system([labelled.get_nframes() - 1])  # the last frame: a relaxation's end point


def label_frames(system: Any, labeler: CommandLabeler, work: Path) -> CommandLabels:
    """Every frame of ``system`` in ``work/frame-<index>``; failures counted, never raised."""
    out = CommandLabels()
    for index in range(system.get_nframes()):
        try:
            labelled = label_frame(system, index, labeler, work / f"frame-{index:05d}")
        except RuntimeError as exc:
            out.counts["failed"] += 1
            out.errors.append(f"frame {index}: {' '.join(str(exc).split())}")  # one line
            continue
        out.frames.append(index)
        out.systems.append(labelled)
        out.counts["labelled"] += 1
    return out
