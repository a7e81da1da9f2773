"""Real DFT labels with PySCF (PBE/STO-3G water: a fraction of a second per SCF on two cores): the forces
are minus the gradient of the energy in eV/Å (checked by finite differences), an unconverged SCF or a
refused molecule is counted and never labelled, and the labels reach a deepmd/npy system intact."""

from __future__ import annotations

import numpy as np
import pytest

from lamflow.ops.labeling.pyscf_dft import (
    HARTREE_EV,
    PyscfSettings,
    elements_without_basis,
    label_frame,
    label_frames,
    write_system,
)

SYMBOLS = ("O", "H", "H")
WATER = np.array([[0.0, 0.0, 0.117], [0.0, 0.757, -0.469], [0.0, -0.757, -0.469]])  # Å, near equilibrium
FAST = PyscfSettings(functional="pbe", basis="sto-3g", conv_tol=1e-10)


def test_forces_are_minus_the_energy_gradient_in_ev_per_angstrom():
    label = label_frame(SYMBOLS, WATER, FAST)
    assert label is not None and label.forces.shape == (3, 3)
    assert -76 * HARTREE_EV < label.energy < -74 * HARTREE_EV  # PBE/STO-3G water: about -75.2 Hartree
    np.testing.assert_allclose(label.forces.sum(axis=0), 0.0, atol=1e-3)  # no net force on a molecule
    step = 1e-3  # Å
    moved = [WATER.copy(), WATER.copy()]
    moved[0][1, 1] += step
    moved[1][1, 1] -= step
    plus, minus = (label_frame(SYMBOLS, m, FAST) for m in moved)
    assert plus is not None and minus is not None
    numeric = -(plus.energy - minus.energy) / (2 * step)
    assert label.forces[1, 1] == pytest.approx(numeric, rel=2e-2, abs=5e-3)
    assert abs(label.forces[1, 1]) > 0.05  # a real force, not a zero that would match anything


def test_an_unconverged_scf_and_a_refused_molecule_are_counted_not_labelled():
    frames = [WATER, WATER * 1.02]
    unconverged = label_frames(SYMBOLS, frames, PyscfSettings(basis="sto-3g", scf_cycles=1, conv_tol=1e-12))
    assert unconverged.counts == {"labelled": 0, "not_converged": 2, "failed": 0} and not unconverged.labels
    refused = label_frames(SYMBOLS, frames, PyscfSettings(basis="sto-3g", spin=1))  # 10 electrons, 2S = 1
    assert refused.counts["failed"] == 2 and "spin" in refused.errors[0].lower()


def test_labels_reach_a_deepmd_system_in_the_type_maps_order(tmp_path):
    import dpdata

    frames = [WATER, WATER + np.array([0.0, 0.02, 0.0])]
    labels = label_frames(SYMBOLS, frames, FAST)
    assert labels.counts["labelled"] == 2 and labels.frames == [0, 1]
    path = write_system(tmp_path / "h2o", SYMBOLS, frames, labels, type_map=["H", "C", "O"])
    assert path is not None
    system = dpdata.LabeledSystem(str(path), fmt="deepmd/npy")
    assert system["atom_names"] == ["H", "C", "O"] and list(system["atom_types"]) == [2, 0, 0]
    assert system.nopbc
    np.testing.assert_allclose(system["energies"], [label.energy for label in labels.labels])
    np.testing.assert_allclose(system["forces"][1], labels.labels[1].forces)
    np.testing.assert_allclose(system["coords"][1], frames[1])
    assert (
        write_system(tmp_path / "none", SYMBOLS, frames, label_frames(SYMBOLS, [], FAST), ["O", "H"]) is None
    )
    with pytest.raises(ValueError, match="lacks O"):
        write_system(tmp_path / "x", SYMBOLS, frames, labels, type_map=["H"])


def test_a_basis_without_an_element_is_named():
    assert elements_without_basis(["H", "O", "Te", "C"], "6-31g*") == ["Te"]
    assert elements_without_basis(["H", "O"], "sto-3g") == []
