"""The concurrent-learning loop's exploration-side steps in-process against the fake dp: an ensemble's
model deviation on collected MD branches (tests/fake_dp.py's models differ by a per-model force scale, so
the deviation is known in closed form), and the selection that reads it — picks, counts, the random
baseline at equal budget, and what a broken input says."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
from dflow.python import FatalError
from pydantic import ValidationError

from lamflow.ops.collect import CollectOP, CollectParams
from lamflow.ops.dp import deep_potential
from lamflow.ops.explore import ExploreOP
from lamflow.ops.model_devi import DEVIATIONS, ModelDeviOP, ModelDeviParams
from lamflow.ops.select_frames import PICKED, RANDOM, REPORT, SelectFramesOP, SelectFramesParams
from tests.fake_dp import save_frozen
from tests.ops.conftest import STAGED
from tests.ops.test_distill_ops import DESCRIPTOR, explore_params


@pytest.fixture
def ensemble(tmp_path: Path) -> list[Path]:
    """Three fake frozen models that differ (a per-model force scale of up to 5 %)."""
    out = []
    for i in range(3):
        path = tmp_path / f"model-{i}.pth"
        save_frozen(
            path, {"type_map": ["O", "H"], "descriptor": DESCRIPTOR, "seed": i}, frozen_by_freeze=True
        )
        out.append(path)
    return out


@pytest.fixture
def branches(run_op, ensemble) -> Path:
    """Two collected MD branches driven by the first model, 5 dumps each."""
    parts = [
        run_op(
            ExploreOP, explore_params(f"s0-{t}k", temperature=float(t)), teacher=ensemble[0], datasets=STAGED
        )
        for t in (300, 600)
    ]
    return run_op(CollectOP, CollectParams(parts=2), part1=parts[0].branch, part2=parts[1].branch).branches


def test_model_devi_is_the_ensembles_force_spread_on_every_dumped_frame(run_op, ensemble, branches):
    from ase.io import read

    out = run_op(ModelDeviOP, ModelDeviParams(models=3), branches=branches,
                 model1=ensemble[0], model2=ensemble[1], model3=ensemble[2])  # fmt: skip
    found = json.loads(out.deviations.read_text())
    assert out.deviations.name == DEVIATIONS and set(found) == {"s0-300k", "s0-600k"}
    frames = read(branches / "s0-600k" / "trajectory.extxyz", index=":")
    assert found["s0-600k"]["dumps"] == [0, 1, 2, 3, 4]
    # by hand: each model's forces on the last frame, then max over atoms of |std over models|
    atom_types = [0 if s == "O" else 1 for s in frames[-1].get_chemical_symbols()]
    forces = np.stack([
        deep_potential(m).eval(frames[-1].positions.reshape(1, -1), frames[-1].cell.array.reshape(1, 9),
                               atom_types)[1].reshape(-1, 3)
        for m in ensemble
    ])  # fmt: skip
    expected = float(np.max(np.linalg.norm(np.std(forces, axis=0), axis=-1)))
    assert found["s0-600k"]["max_devi_f"][-1] == pytest.approx(expected) and expected > 0
    assert out.report["models"] == 3 and out.report["branches"]["s0-300k"]["frames"] == 5


def test_one_model_is_no_ensemble_and_a_missing_one_is_named(run_op, ensemble, branches):
    with pytest.raises(ValidationError):
        ModelDeviParams(models=1)
    with pytest.raises(FatalError, match="3 models expected"):
        run_op(
            ModelDeviOP, ModelDeviParams(models=3), branches=branches, model1=ensemble[0], model2=ensemble[1]
        )


def _deviations(branches: Path, values: dict[str, list[float | None]]) -> Path:
    path = branches.parent / "devi.json"
    path.write_text(
        json.dumps({b: {"dumps": list(range(len(v))), "max_devi_f": v} for b, v in values.items()})
    )
    return path


def test_select_picks_by_deviation_and_draws_the_baseline_from_the_same_frames(run_op, branches):
    from ase.io import read

    deviations = _deviations(branches, {
        "s0-300k": [0.01, 0.2, 0.35, 0.05, None],  # None: the models could not evaluate it (failed)
        "s0-600k": [0.3, 0.9, 0.25, 0.15, 0.02],
    })  # fmt: skip
    params = SelectFramesParams(lo=0.1, hi=0.5, max_picks=3, random_baseline=True, seed=3)
    out = run_op(SelectFramesOP, params, branches=branches, deviations=deviations)
    report = out.report
    assert {k: report[k] for k in ("explored", "accurate", "candidate", "failed", "picked", "adjacent")} == {
        "explored": 10, "accurate": 3, "candidate": 5, "failed": 2, "picked": 3, "adjacent": 2,
    }  # fmt: skip
    assert report["accurate_fraction"] == pytest.approx(0.3) and report["random_picked"] == 3
    picked = read(out.picked / PICKED, index=":")
    assert [(a.info["branch"], a.info["dump"]) for a in picked] == [
        ("s0-300k", 2),
        ("s0-600k", 0),
        ("s0-600k", 2),
    ]
    original = read(branches / "s0-600k" / "trajectory.extxyz", index=":")
    assert np.allclose(picked[1].positions, original[0].positions) and picked[1].calc is None
    baseline = read(out.picked / RANDOM, index=":")
    assert len(baseline) == 3 and all(not math.isnan(a.info["max_devi_f"]) and a.info["max_devi_f"] < 0.5
                                      for a in baseline)  # fmt: skip
    assert json.loads((out.picked / REPORT).read_text()) == report


def test_select_refuses_trust_levels_in_the_wrong_order_and_deviations_that_do_not_fit(run_op, branches):
    with pytest.raises(ValidationError, match="0 < lo < hi"):
        SelectFramesParams(lo=0.5, hi=0.1, max_picks=2)
    params = SelectFramesParams(lo=0.1, hi=0.5, max_picks=2)
    short = _deviations(branches, {"s0-300k": [0.2] * 3, "s0-600k": [0.2] * 5})
    with pytest.raises(FatalError, match="'s0-300k' has 5 frames, 3 deviations"):
        run_op(SelectFramesOP, params, branches=branches, deviations=short)
    missing = _deviations(branches, {"s0-600k": [0.2] * 5})
    with pytest.raises(FatalError, match="no deviations for branch 's0-300k'"):
        run_op(SelectFramesOP, params, branches=branches, deviations=missing)
