"""An ensemble's model deviation per frame, as ``dp model-devi`` reports it: for every atom the norm of the
standard deviation over the K models of its predicted force vector; per frame the maximum over atoms
(``max_devi_f``, eV/Å), the quantity dpgen2's trust levels are set on. The arithmetic is DeePMD-kit's own
(:func:`lamflow.ops.dp.force_deviation`); this module loads nothing itself: the models arrive loaded (each
once per exploration step) and the frames as :class:`~lamflow.ops.evaluation.predict.SystemFrames`.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from lamflow.ops.dp import force_deviation
from lamflow.ops.evaluation.predict import SystemFrames, predict

MIN_MODELS = 2


def ensemble_forces(models: Sequence[Any], system: SystemFrames) -> np.ndarray:
    """Every model's forces on every frame: (n_models, n_frames, n_atoms, 3), eV/Å."""
    if len(models) < MIN_MODELS:
        raise ValueError(f"a model deviation needs at least {MIN_MODELS} models (got {len(models)})")
    shape = (system.nframes, system.natoms, 3)
    return np.stack([predict(model, system).force.reshape(shape) for model in models])


def max_force_deviation(models: Sequence[Any], system: SystemFrames) -> np.ndarray:
    """Per frame of ``system``: the ensemble's maximum atomic force deviation (n_frames,), eV/Å."""
    return force_deviation(ensemble_forces(models, system))
