"""The converge step in-process: the selection's accurate fraction and the held-out test's force RMSE
decide whether the loop stops, and the decision is recorded with its reason."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from dflow.python import FatalError
from pydantic import ValidationError

from lamflow.ops.converge import DECISION, ConvergeOP, ConvergeParams
from lamflow.ops.label_dft import REPORT as LABEL_REPORT
from lamflow.ops.select_frames import REPORT
from tests.ops.test_test import DP_TEST_LOG


def picked(tmp_path: Path, accurate_fraction: float) -> Path:
    folder = tmp_path / "picked"
    folder.mkdir(exist_ok=True)
    (folder / REPORT).write_text(json.dumps({"explored": 40, "accurate_fraction": accurate_fraction}))
    return folder


def test_the_accurate_fraction_converges_the_loop(run_op, tmp_path):
    params = ConvergeParams(iteration=2, max_iterations=5, accurate_fraction=0.9)
    out = run_op(ConvergeOP, params, picked=picked(tmp_path, 0.95))
    assert out.stop and out.converged and out.next_iteration == 3
    assert out.reason == "converged at iteration 2: accurate fraction 0.950 >= 0.9"
    record = json.loads(out.decision.read_text())
    assert out.decision.name == DECISION and record["selection"]["explored"] == 40


def dp_test_log(tmp_path: Path, force_rmse: str) -> Path:
    """A `dp test` log whose weighted block gives this force RMSE."""
    log = tmp_path / f"test-{force_rmse}.log"
    log.write_text(DP_TEST_LOG.replace("4.653188e-01", force_rmse))
    return log


def test_the_held_out_rmse_converges_it_and_a_missing_one_does_not(run_op, tmp_path):
    params = ConvergeParams(iteration=1, max_iterations=3, test_force_rmse=0.2)
    assert run_op(
        ConvergeOP, params, picked=picked(tmp_path, 0.1), test_log=dp_test_log(tmp_path, "0.15")
    ).converged
    going = run_op(ConvergeOP, params, picked=picked(tmp_path, 0.1), test_log=dp_test_log(tmp_path, "nan"))
    assert not going.stop and "test force RMSE not finite (nan)" in going.reason
    assert json.loads(going.decision.read_text())["test_force_rmse"] is None
    without = run_op(ConvergeOP, params, picked=picked(tmp_path, 0.1))
    assert not without.converged and "test force RMSE missing" in without.reason


def test_the_labelling_counts_join_the_iterations_record(run_op, tmp_path):
    labels = tmp_path / "labels"
    labels.mkdir()
    (labels / LABEL_REPORT).write_text(json.dumps({"frames": 4, "labelled": 3, "failed": 1}))
    out = run_op(ConvergeOP, ConvergeParams(iteration=1, max_iterations=2), picked=picked(tmp_path, 0.5),
                 labels=labels)  # fmt: skip
    assert out.record["labelling"]["labelled"] == 3 and out.record["accurate_fraction"] == 0.5


def test_the_last_iteration_stops_without_converging(run_op, tmp_path):
    params = ConvergeParams(iteration=3, max_iterations=3, accurate_fraction=0.99)
    out = run_op(ConvergeOP, params, picked=picked(tmp_path, 0.5))
    assert (
        out.stop and not out.converged and out.reason.startswith("not converged: max_iterations (3) reached")
    )


def test_bad_criteria_and_a_missing_selection_are_refused(run_op, tmp_path):
    with pytest.raises(ValidationError):
        ConvergeParams(iteration=0, max_iterations=3)
    with pytest.raises(ValidationError):
        ConvergeParams(iteration=1, max_iterations=3, accurate_fraction=1.5)
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(FatalError, match="wrote no selection.json"):
        run_op(ConvergeOP, ConvergeParams(iteration=1, max_iterations=2), picked=empty)
