"""What `lamflow status` says a local step runs on (the run's live slots) or ran on (its record)."""

from __future__ import annotations

from lamflow.workflows.cli.render import _held
from lamflow.workflows.engines.summary import Slot, StepRecord


def _record(phase: str, ran_on: Slot | None = None) -> StepRecord:
    return StepRecord(key="train-a", op="finetune", summary="", phase=phase, ran_on=ran_on)  # type: ignore[arg-type]


def test_a_running_step_shows_its_slot_or_that_it_waits_for_one():
    live = {"train-a": Slot(gpus=["1"], cores=4, waited_s=0.0)}
    assert _held(_record("Running"), live) == "GPU 1, 4 cores now"
    assert _held(_record("Running"), {}) == "waiting for a slot"


def test_a_finished_step_shows_what_it_held():
    assert _held(_record("Succeeded", Slot(gpus=["0", "2"], cores=1)), {}) == "GPUs 0,2, 1 core"
    assert _held(_record("Succeeded", Slot(cores=2)), {}) == "2 cores"
    assert _held(_record("Cached"), {}) == ""
