"""DFT labels with PySCF for molecules: Kohn-Sham energy and analytic forces of each frame, in DeePMD-kit's
units (eV, eV/Å), written as a deepmd/npy system with dpdata.

One frame is one SCF (``scf_cycles`` at most, ``conv_tol`` in Hartree) and one gradient. A frame whose
SCF does not converge is dropped and counted (``not_converged``), never labelled with an unconverged
energy; a frame PySCF refuses (an electron count that does not fit the spin, say) is counted as ``failed``
with PySCF's message. Only frames without a cell: periodic frames need PySCF's PBC module, which this
labeler does not drive.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from lamflow.ops.data.labelled import labelled_system

HARTREE_EV = 27.211386245988  # CODATA 2018, as ASE and dpdata use
BOHR_ANGSTROM = 0.529177210903
FORCE_UNIT = HARTREE_EV / BOHR_ANGSTROM  # Hartree/Bohr -> eV/Å


@dataclass(frozen=True)
class PyscfSettings:
    """The method: exchange-correlation functional (PySCF's name: ``pbe``, ``b3lyp``...), basis set, total
    charge, spin as 2S (the number of unpaired electrons), the SCF's cycle limit and energy tolerance."""

    functional: str = "pbe"
    basis: str = "6-31g*"
    charge: int = 0
    spin: int = 0
    scf_cycles: int = 50
    conv_tol: float = 1e-9


@dataclass(frozen=True)
class Label:
    energy: float  # eV
    forces: np.ndarray  # (natoms, 3) eV/Å


@dataclass
class Labels:
    """The labelled frames (their indices into the input and their labels) and the counts."""

    frames: list[int] = field(default_factory=list)
    labels: list[Label] = field(default_factory=list)
    counts: dict[str, int] = field(default_factory=lambda: {"labelled": 0, "not_converged": 0, "failed": 0})
    errors: list[str] = field(default_factory=list)


def elements_without_basis(symbols: Sequence[str], basis: str) -> list[str]:
    """The elements ``basis`` has no functions for (PySCF's basis library), sorted: what validate refuses."""
    import warnings

    from pyscf import gto

    missing = []
    for element in sorted(set(symbols)):
        try:
            with warnings.catch_warnings():  # PySCF suggests basis-set-exchange for what it lacks
                warnings.simplefilter("ignore")
                found = gto.basis.load(basis, element)
        except (KeyError, RuntimeError, ValueError, OSError):  # PySCF's ways of saying "not in this basis"
            found = None
        if not found:
            missing.append(element)
    return missing


def _molecule(symbols: Sequence[str], coords: np.ndarray, settings: PyscfSettings) -> Any:
    from pyscf import gto

    atoms = [(s, tuple(float(x) for x in xyz)) for s, xyz in zip(symbols, coords, strict=True)]
    return gto.M(
        atom=atoms, basis=settings.basis, charge=settings.charge, spin=settings.spin, unit="Angstrom",
        verbose=0,
    )  # fmt: skip


def label_frame(symbols: Sequence[str], coords: np.ndarray, settings: PyscfSettings) -> Label | None:
    """Energy and forces of one frame (``coords``: (natoms, 3) Å); None when its SCF did not converge."""
    from pyscf import dft

    molecule = _molecule(symbols, np.asarray(coords, dtype=float).reshape(-1, 3), settings)
    method = dft.RKS(molecule) if settings.spin == 0 else dft.UKS(molecule)
    method.xc = settings.functional
    method.max_cycle = settings.scf_cycles
    method.conv_tol = settings.conv_tol
    energy = method.kernel()
    if not method.converged:
        return None
    gradient = method.nuc_grad_method().kernel()  # Hartree/Bohr
    return Label(energy=float(energy) * HARTREE_EV, forces=-np.asarray(gradient) * FORCE_UNIT)


def label_frames(symbols: Sequence[str], coords: Sequence[np.ndarray], settings: PyscfSettings) -> Labels:
    """Every frame in turn; what could not be labelled is counted, never raised."""
    out = Labels()
    for index, frame in enumerate(coords):
        try:
            label = label_frame(symbols, frame, settings)
        except (RuntimeError, ValueError, KeyError) as exc:  # PySCF's refusals of a molecule or a method
            out.counts["failed"] += 1
            out.errors.append(
                f"frame {index}: {type(exc).__name__}: {' '.join(str(exc).split())}"
            )  # one line
            continue
        if label is None:
            out.counts["not_converged"] += 1
            continue
        out.frames.append(index)
        out.labels.append(label)
        out.counts["labelled"] += 1
    return out


def write_system(
    path: Path, symbols: Sequence[str], coords: Sequence[np.ndarray], labels: Labels, type_map: Sequence[str]
) -> Path | None:
    """The labelled frames as one deepmd/npy system at ``path`` (no cell: ``nopbc``), types in
    ``type_map``'s order; None when no frame was labelled."""
    if not labels.frames:
        return None
    names = list(type_map)
    missing = sorted(set(symbols) - set(names))
    if missing:
        raise ValueError(f"type map {names} lacks {', '.join(missing)}")
    types = np.array([names.index(s) for s in symbols], dtype=int)
    system = labelled_system(
        names,
        types,
        coords=np.stack([np.asarray(coords[i], dtype=float).reshape(-1, 3) for i in labels.frames]),
        energies=np.array([label.energy for label in labels.labels]),
        forces=np.stack([label.forces for label in labels.labels]),
    )
    system.to("deepmd/npy", str(path))
    return path
