"""The dummy model (formula-only energies, zero forces) and the normalised errors next to every RMSE."""

from __future__ import annotations

import numpy as np
import pytest

from lamflow.ops.evaluation.baseline import (
    dummy_errors,
    element_energies,
    log_average,
    normalized,
    worse_than_dummy,
)
from lamflow.ops.evaluation.predict import SystemFrames


def system(
    symbols: str, energies: list[float], force: float = 0.3, virial: float | None = None
) -> SystemFrames:
    n, atoms = len(energies), tuple(symbols)
    return SystemFrames(
        path=symbols,
        symbols=atoms,
        coords=np.zeros((n, 3 * len(atoms))),
        cells=None,
        energy=np.asarray(energies, dtype=float),
        force=np.full((n, 3 * len(atoms)), force),
        virial=None if virial is None else np.full((n, 9), virial),
    )


def test_per_element_energies_are_recovered_from_formulas():
    # E = 2*mu_O + 1*mu_H ... with mu_O = -4, mu_H = -1
    fit = [system("OHH", [-6.0, -6.0]), system("OOH", [-9.0]), system("O", [-4.0])]
    assert element_energies(fit) == pytest.approx({"H": -1.0, "O": -4.0})


def test_dummy_errors_and_normalised_errors():
    fit = [system("OHH", [-6.0]), system("OOH", [-9.0])]
    test = [system("OHH", [-5.7, -6.3], force=0.4)]  # energies off the formula by +-0.3 eV (0.1 eV/atom)
    dummy = dummy_errors(test, fit)
    assert dummy["dummy_energy_rmse_per_atom"] == pytest.approx(0.1)
    assert dummy["dummy_force_rmse"] == pytest.approx(0.4)  # zero forces: the labels' RMS
    assert "dummy_virial_rmse_per_atom" not in dummy
    scores = normalized({"energy_rmse_per_atom": 0.05, "force_rmse": 0.8}, dummy)
    assert scores["normalized_energy"] == pytest.approx(0.5)
    assert scores["normalized_force"] == 1.0  # worse than knowing nothing is capped at 1
    assert scores["normalized_error"] == pytest.approx(0.5 * 0.5 + 0.5 * 1.0)


def test_virials_take_a_tenth_of_the_weight():
    test = [system("OHH", [-5.7, -6.3], virial=0.3)]
    dummy = dummy_errors(test, [system("OHH", [-6.0])])
    assert dummy["dummy_virial_rmse_per_atom"] == pytest.approx(0.1)
    scores = normalized({"energy_rmse_per_atom": 0.0, "force_rmse": 0.0, "virial_rmse_per_atom": 0.05}, dummy)
    assert scores["normalized_error"] == pytest.approx(0.1 * 0.5)


def test_log_average():
    assert log_average([0.25, 1.0]) == pytest.approx(0.5)
    with pytest.raises(ValueError):
        log_average([0.0])


def test_the_test_op_reports_the_dummy_next_to_the_rmse(run_op, fake_dp, tmp_path):
    from lamflow.ops.test import TestOP, TestParams
    from tests.fake_dp import save_frozen
    from tests.ops.conftest import STAGED, formats

    frozen = tmp_path / "m.pth"
    save_frozen(frozen, {"type_map": ["Ge", "Te"], "descriptor": {"type": "se_e2_a"}}, frozen_by_freeze=True)
    out = run_op(
        TestOP,
        TestParams(
            dataset="gete-test", dataset_formats=formats("gete-test", "gete"), baseline_dataset="gete"
        ),
        model=frozen,
        datasets=STAGED,
    )
    m = out.metrics
    labels = np.concatenate([np.load(p).ravel() for p in STAGED["gete-test"].glob("*/set.*/force.npy")])
    assert m["dummy_force_rmse"] == pytest.approx(float(np.sqrt(np.mean(labels**2))), rel=1e-6)
    assert 0 < m["normalized_force"] <= 1 and 0 < m["normalized_energy"] <= 1
    assert m["normalized_error"] == pytest.approx(0.5 * m["normalized_energy"] + 0.5 * m["normalized_force"])


def test_the_uncapped_ratio_says_how_much_worse_than_the_dummy():
    dummy = {"dummy_energy_rmse_per_atom": 0.1, "dummy_force_rmse": 0.5}
    scores = normalized({"energy_rmse_per_atom": 0.05, "force_rmse": 1.2}, dummy)
    assert scores["normalized_force"] == 1.0 and scores["ratio_force"] == pytest.approx(2.4)
    assert scores["ratio_energy"] == pytest.approx(0.5)
    assert worse_than_dummy(scores) == ["force"]
    assert worse_than_dummy(normalized({"energy_rmse_per_atom": 0.05, "force_rmse": 0.4}, dummy)) == []
