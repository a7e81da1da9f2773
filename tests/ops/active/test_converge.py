"""The loop's stop decision: either criterion converges it, max_iterations stops it unconverged, and the
reason says which numbers decided."""

from __future__ import annotations

import math

import pytest

from lamflow.ops.active.converge import Criteria, decide


def test_accurate_fraction_converges_as_dpgen2_does():
    criteria = Criteria(max_iterations=4, accurate_fraction=0.95)
    going = decide(criteria, 1, accurate_fraction=0.80, test_force_rmse=None)
    assert not going.stop and not going.converged and "accurate fraction 0.800 < 0.95" in going.reason
    done = decide(criteria, 2, accurate_fraction=0.95, test_force_rmse=None)
    assert done.stop and done.converged
    assert done.reason == "converged at iteration 2: accurate fraction 0.950 >= 0.95"


def test_test_rmse_converges_as_pfd_kit_does_and_either_criterion_is_enough():
    criteria = Criteria(max_iterations=5, accurate_fraction=0.99, test_force_rmse=0.15)
    done = decide(criteria, 3, accurate_fraction=0.5, test_force_rmse=0.12)
    assert done.converged and "test force RMSE 0.12 <= 0.15 eV/Å" in done.reason
    assert "accurate fraction" not in done.reason


def test_max_iterations_stops_without_calling_it_converged():
    criteria = Criteria(max_iterations=2, test_force_rmse=0.1)
    last = decide(criteria, 2, accurate_fraction=0.9, test_force_rmse=0.3)
    assert last.stop and not last.converged
    assert last.reason == "not converged: max_iterations (2) reached (test force RMSE 0.3 > 0.1 eV/Å)"
    bare = decide(Criteria(max_iterations=1), 1, accurate_fraction=1.0, test_force_rmse=0.0)
    assert bare.stop and not bare.converged and "no convergence criterion set" in bare.reason


@pytest.mark.parametrize("rmse", [None, math.nan, math.inf])
def test_a_missing_or_broken_number_never_converges(rmse):
    decision = decide(Criteria(max_iterations=3, test_force_rmse=0.1), 1, None, rmse)
    assert not decision.converged and not decision.stop
    assert "test force RMSE missing" in decision.reason or "not finite" in decision.reason


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"max_iterations": 0}, "max_iterations"),
        ({"max_iterations": 2, "accurate_fraction": 0.0}, "accurate_fraction"),
        ({"max_iterations": 2, "accurate_fraction": 1.2}, "accurate_fraction"),
        ({"max_iterations": 2, "test_force_rmse": 0.0}, "test_force_rmse"),
    ],
)
def test_criteria_that_cannot_be_met_are_refused(kwargs, message):
    with pytest.raises(ValueError, match=message):
        Criteria(**kwargs)
