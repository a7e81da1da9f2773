"""The time split of a loop's iterations (workflows/engines/loops.py): the engine's own time is the part of
an iteration's wall time during which no step of the run ran, never the wait before a resume."""

from __future__ import annotations

from lamflow.workflows.engines.loops import idle_seconds, pauses
from lamflow.workflows.engines.summary import IterationRow, LoopRecord


def test_idle_seconds_counts_only_what_no_interval_covers():
    assert idle_seconds(0, 10, []) == 10
    assert idle_seconds(0, 10, [(0, 10)]) == 0
    assert idle_seconds(0, 10, [(1, 3), (2, 4), (6, 7)]) == 10 - 3 - 1  # overlaps count once
    assert idle_seconds(0, 10, [(-5, 2), (9, 20)]) == 10 - 2 - 1  # clipped to the window
    assert idle_seconds(0, 10, [(2, 8), (3, 4)]) == 4  # one inside another


def test_a_pause_runs_from_the_last_step_end_before_a_resume_to_the_resume():
    intervals = [(100.0, 110.0), (105.0, 120.0), (500.0, 510.0)]
    assert pauses(["1970-01-01T00:07:00+00:00"], intervals) == [(120.0, 420.0)]
    assert pauses(["1970-01-01T00:00:50+00:00"], intervals) == []  # nothing ran before it


def test_the_loops_orchestration_share_in_words():
    rows = [
        IterationRow(iteration=1, seconds={"training": 50.0, "orchestration": 1.0}, wall_s=60.0),
        IterationRow(iteration=2, seconds={"training": 70.0, "orchestration": 3.0}, wall_s=40.0),
    ]
    text = LoopRecord(key="active-w", iterations=rows).orchestration()
    assert text is not None and "4.0 s of the loop's 100.0 s (4.0 %" in text
    assert LoopRecord(key="active-w", iterations=[IterationRow(iteration=1)]).orchestration() is None
