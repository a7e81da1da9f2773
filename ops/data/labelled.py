"""Labelled frames as a dpdata ``LabeledSystem``: the one place that lays out dpdata's fields for frames a
labeler computed (the distillation's teacher, DFT with PySCF), so every labeler writes the same deepmd/npy
layout — atom names in the spec's type map, zero cells and ``nopbc`` for molecules, virials only with a cell;
and which frames go into one system (:func:`indices_by_kind`).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np


def indices_by_kind(frames: Sequence[Any]) -> dict[tuple[tuple[str, ...], bool], list[int]]:
    """Indices of ASE frames grouped by what puts frames into one deepmd/npy system: their atoms (symbols
    in order) and periodicity."""
    groups: dict[tuple[tuple[str, ...], bool], list[int]] = {}
    for index, atoms in enumerate(frames):
        groups.setdefault((tuple(atoms.get_chemical_symbols()), bool(all(atoms.pbc))), []).append(index)
    return groups


def labelled_system(
    type_map: list[str],
    types: np.ndarray,
    coords: np.ndarray,
    energies: np.ndarray,
    forces: np.ndarray,
    cells: np.ndarray | None = None,
    virials: np.ndarray | None = None,
) -> Any:
    """``n`` frames of the same atoms: ``types`` indices into ``type_map``; coordinates and forces in Å and
    eV/Å, (n, natoms, 3) or (n, natoms*3); energies in eV; ``cells`` (n, 3, 3) or None (a molecule);
    ``virials`` (n, 3, 3) in eV, only with a cell."""
    import dpdata

    n, natoms = len(coords), len(types)
    data: dict[str, Any] = {
        "atom_names": list(type_map),
        "atom_numbs": [int(np.sum(types == i)) for i in range(len(type_map))],
        "atom_types": types,
        "orig": np.zeros(3),
        "cells": np.zeros((n, 3, 3)) if cells is None else np.asarray(cells).reshape(n, 3, 3),
        "coords": np.asarray(coords).reshape(n, natoms, 3),
        "energies": np.asarray(energies).reshape(n),
        "forces": np.asarray(forces).reshape(n, natoms, 3),
        "nopbc": cells is None,
    }
    if cells is not None and virials is not None:
        data["virials"] = np.asarray(virials).reshape(n, 3, 3)
    return dpdata.LabeledSystem(data=data)
