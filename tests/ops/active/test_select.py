"""Selection between trust levels: classification, the budget, the diversity rule, every count, and the
random baseline at equal budget."""

from __future__ import annotations

import math

import pytest

from lamflow.ops.active.select import Frame, TrustLevels, random_picks, select

TRUST = TrustLevels(lo=0.1, hi=0.5)


def frames(trajectory: str, deviations: list[float]) -> list[Frame]:
    return [Frame(trajectory, i, d) for i, d in enumerate(deviations)]


def test_classification_at_the_edges():
    assert TRUST.classify(0.0999) == "accurate"
    assert TRUST.classify(0.1) == "candidate"  # lo is a candidate, as in dpgen2 (lo <= devi < hi)
    assert TRUST.classify(0.4999) == "candidate"
    assert TRUST.classify(0.5) == "failed"
    assert TRUST.classify(math.nan) == TRUST.classify(math.inf) == "failed"  # the MD blew up


@pytest.mark.parametrize(("lo", "hi"), [(0.5, 0.5), (0.6, 0.5), (0.0, 0.5), (0.1, math.inf), (math.nan, 1)])
def test_trust_levels_that_cannot_separate_anything_are_refused(lo, hi):
    with pytest.raises(ValueError, match="0 < lo < hi"):
        TrustLevels(lo, hi)


def test_highest_deviation_first_within_the_budget_never_adjacent_dumps():
    explored = frames("t300", [0.05, 0.3, 0.45, 0.2, 0.6]) + frames("t600", [0.44, 0.12, 0.49, math.nan])
    chosen = select(explored, TRUST, max_picks=3)
    # by deviation: t600#2 0.49, t300#2 0.45, t600#0 0.44, t300#1 0.3 (adjacent to t300#2), t300#3 0.2
    # (adjacent to t300#2), t600#1 0.12 (adjacent to t600#0 and #2)
    assert [(f.trajectory, f.dump) for f in chosen.picked] == [("t600", 2), ("t300", 2), ("t600", 0)]
    assert chosen.counts == {
        "explored": 9,
        "accurate": 1,
        "candidate": 6,
        "failed": 2,
        "picked": 3,
        "adjacent": 3,
        "over_budget": 0,
    }
    assert chosen.accurate_fraction == pytest.approx(1 / 9)


def test_every_candidate_is_counted_once_when_the_budget_runs_out():
    explored = frames("a", [0.2, 0.0, 0.3, 0.0, 0.4, 0.0, 0.25])
    chosen = select(explored, TRUST, max_picks=2)
    assert [f.dump for f in chosen.picked] == [4, 2]
    counts = chosen.counts
    assert counts["candidate"] == counts["picked"] + counts["adjacent"] + counts["over_budget"] == 4
    assert counts["explored"] == counts["accurate"] + counts["candidate"] + counts["failed"]
    assert select(explored, TRUST, max_picks=0).picked == []
    with pytest.raises(ValueError, match="max_picks"):
        select(explored, TRUST, max_picks=-1)


def test_nothing_explored_is_not_converged():
    chosen = select([], TRUST, max_picks=5)
    assert chosen.picked == [] and chosen.accurate_fraction == 0.0


def test_ties_are_broken_the_same_way_every_time():
    explored = frames("b", [0.3, 0.0, 0.3]) + frames("a", [0.3])
    assert [(f.trajectory, f.dump) for f in select(explored, TRUST, 2).picked] == [("a", 0), ("b", 0)]
    assert select(list(reversed(explored)), TRUST, 2).picked == select(explored, TRUST, 2).picked


def test_the_random_baseline_spends_the_same_budget_on_frames_that_did_not_fail():
    explored = frames("t", [0.01, 0.2, 0.7, 0.3, math.nan, 0.05, 0.45])
    first = random_picks(explored, TRUST, budget=3, seed=7)
    assert len(first) == 3 and all(TRUST.classify(f.deviation) != "failed" for f in first)
    assert first == random_picks(list(reversed(explored)), TRUST, budget=3, seed=7)  # seeded, order-free
    assert len(random_picks(explored, TRUST, budget=50, seed=1)) == 5  # never more than the pool
