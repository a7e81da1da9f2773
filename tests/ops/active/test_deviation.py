"""The ensemble's model deviation: DeePMD-kit's own max_devi_f, on forces the models predict."""

from __future__ import annotations

import numpy as np
import pytest

from lamflow.ops.active.deviation import ensemble_forces, max_force_deviation
from lamflow.ops.dp import force_deviation
from lamflow.ops.evaluation.predict import SystemFrames


class Model:
    """A stand-in for a loaded DeepPot: forces = a fixed offset per model, for every atom and frame."""

    def __init__(self, offset: np.ndarray) -> None:
        self.offset = offset

    def get_type_map(self):
        return ["O", "H"]

    def eval(self, coords, cells, atom_types):
        nf, natoms = len(coords), len(atom_types)
        force = np.broadcast_to(self.offset, (nf, natoms, 3)).copy()
        force[:, 0, :] *= np.arange(1, nf + 1)[:, None]  # atom 0 disagrees more frame by frame
        return np.zeros((nf, 1)), force.reshape(nf, natoms * 3), np.zeros((nf, 9))


def water(frames: int) -> SystemFrames:
    return SystemFrames(
        path="w", symbols=("O", "H", "H"), coords=np.zeros((frames, 9)), cells=None,
        energy=None, force=None, virial=None,
    )  # fmt: skip


def test_max_force_deviation_is_deepmd_kits_max_devi_f():
    models = [Model(np.array([0.0, 0.0, 0.0])), Model(np.array([0.2, 0.0, 0.0]))]
    deviation = max_force_deviation(models, water(3))
    # two models 0.2 apart in x: std 0.1 per atom, atom 0 scaled by the frame number
    assert deviation == pytest.approx([0.1, 0.2, 0.3])
    forces = ensemble_forces(models, water(3))
    assert forces.shape == (2, 3, 3, 3)
    expected = np.max(np.linalg.norm(np.std(forces, axis=0), axis=-1), axis=-1)  # dp model-devi's formula
    assert force_deviation(forces) == pytest.approx(expected)


def test_identical_models_agree_and_one_model_is_refused():
    same = [Model(np.array([1.0, -2.0, 0.5]))] * 3
    assert max_force_deviation(same, water(2)) == pytest.approx([0.0, 0.0])
    with pytest.raises(ValueError, match="at least 2 models"):
        max_force_deviation(same[:1], water(2))
    with pytest.raises(ValueError, match=r"\(models, frames, atoms, 3\)"):
        force_deviation(np.zeros((2, 3, 9)))
