"""A loop decided at run time, unrolled (compile/loops.py): iteration n's steps keyed with their
iteration, what each iteration carries to the next, the steps after the loop held back until it stops
and then wired to its last iteration, and cache keys that tell iterations apart."""

from __future__ import annotations

import dataclasses

import pytest

from lamflow.workflows.api import validate
from lamflow.workflows.compile.loops import LoopProgress, unroll
from lamflow.workflows.compile.plan import IterationOutput, LoopOutput, PlanError, StepOutput
from lamflow.workflows.store.step_cache import cache_keys
from tests.workflows.active_spec import active_spec

BODY = [
    "train-1", "train-2", "explore-s0-300k", "explore-s1-300k", "collect", "model-devi", "select", "label",
    "merge", "test", "converge",
]  # fmt: skip


@pytest.fixture
def plan(write_spec):
    return validate(write_spec(active_spec()))[1]


def test_the_static_plan_holds_the_loop_and_the_steps_around_it(plan):
    (loop,) = plan.loops
    assert loop.key == "active-w" and [s.key for s in loop.body] == BODY and loop.max_iterations == 2
    assert [s.key for s in plan.steps] == ["pretrain", "freeze-water", "test-active-w-on-water-valid"]
    assert loop.position == 2  # after the pretraining it starts from
    after = plan.step("test-active-w-on-water-valid")
    assert after.artifacts["model"] == LoopOutput("active-w", "model") and after.depends == ["active-w"]
    assert loop.outer_depends == ["pretrain"]
    assert plan.record()["loops"][0]["body"][0]["artifacts"]["labelled"] == {"carried": "labelled"}


def test_iteration_one_runs_alone_and_the_steps_after_the_loop_wait(plan):
    first = unroll(plan)
    keys = [s.key for s in first.steps]
    assert keys == ["pretrain", "freeze-water", *(f"active-w-i001-{k}" for k in BODY)]
    train = first.step("active-w-i001-train-1")
    assert "labelled" not in train.artifacts  # nothing labelled before iteration 1
    assert train.artifacts["base_checkpoint"] == StepOutput("pretrain", "checkpoint")
    assert first.step("active-w-i001-model-devi").depends == [
        "active-w-i001-collect", "active-w-i001-train-1", "active-w-i001-train-2",
    ]  # fmt: skip
    assert first.loops == () and first.step("active-w-i001-converge").params.iteration == 1


def test_the_next_iteration_reads_what_the_last_one_carried(plan):
    second = unroll(plan, {"active-w": LoopProgress(2)})
    train = second.step("active-w-i002-train-1")
    assert train.artifacts["labelled"] == StepOutput("active-w-i001-merge", "labelled")
    assert second.step("active-w-i002-merge").artifacts["previous"] == StepOutput(
        "active-w-i001-merge", "labelled"
    )
    assert second.step("active-w-i002-explore-s0-300k").params.iteration == 2
    assert second.step("active-w-i002-converge").params.iteration == 2
    assert "test-active-w-on-water-valid" not in {s.key for s in second.steps}  # not stopped yet


def test_once_stopped_the_steps_after_read_the_last_iteration(plan):
    done = unroll(plan, {"active-w": LoopProgress(2, stopped=True)})
    after = done.step("test-active-w-on-water-valid")
    assert after.artifacts["model"] == StepOutput("active-w-i002-train-1", "model")
    assert after.depends == ["active-w-i002-train-1"]
    named = {s.key: (s.model_ref, s.checkpoint_ref) for s in done.steps if s.model_ref or s.checkpoint_ref}
    assert named["active-w-i002-train-1"] == ("active.w", "active.w")
    assert "active-w-i001-train-1" not in named  # only the last iteration's model is active.w
    done.check()
    with pytest.raises(PlanError, match="3 iterations"):
        unroll(plan, {"active-w": LoopProgress(3)})


def test_cache_keys_tell_iterations_apart_and_stay_stable(plan):
    done = unroll(plan, {"active-w": LoopProgress(2, stopped=True)})
    keys = cache_keys(done, tools={})
    assert keys["active-w-i001-train-1"] != keys["active-w-i002-train-1"]  # other data, other key
    assert keys == cache_keys(unroll(plan, {"active-w": LoopProgress(2, stopped=True)}), tools={})
    static = cache_keys(plan, tools={})
    assert "test-active-w-on-water-valid" not in static  # known once the loop stopped
    assert static["pretrain"] == keys["pretrain"]


def test_a_body_wired_wrong_is_a_plan_error(plan):
    (loop,) = plan.loops
    merge = loop.body_step("merge")
    broken = dataclasses.replace(
        merge, artifacts={**merge.artifacts, "labels": IterationOutput("converge", "labels")}
    )
    body = tuple(broken if s.key == "merge" else s for s in loop.body)
    with pytest.raises(PlanError, match="no earlier body step 'converge'"):
        dataclasses.replace(loop, body=body).check()
    with pytest.raises(PlanError, match="decision step"):
        dataclasses.replace(loop, decision="merge").check()
