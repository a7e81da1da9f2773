"""Step groups: short steps that wait for the same training steps on one kind of resource share a group."""

from __future__ import annotations

from dataclasses import dataclass, field

from lamflow.workflows.api import validate
from lamflow.workflows.compile.groups import MAX_NAME, group_steps
from tests.conftest import EXAMPLES


@dataclass
class Step:  # the attributes group_steps reads from a StepPlan
    key: str
    depends: list[str] = field(default_factory=list)
    short: bool = True
    resource: str = "default"


def test_short_chains_after_one_training_step_form_one_group():
    steps = [
        Step("pretrain", short=False),
        Step("freeze-a", ["pretrain"]),
        Step("freeze-b", ["pretrain"]),
        Step("bias-a", ["freeze-a"]),
        Step("test-a", ["bias-a"]),
        Step("finetune", ["pretrain"], short=False),
        Step("test-ft", ["finetune"]),
        Step("test-both", ["finetune", "freeze-b"]),
    ]
    assert group_steps(steps) == {
        "after-pretrain": ("freeze-a", "freeze-b", "bias-a", "test-a"),
        "after-finetune": ("test-ft",),
        "after-finetune-pretrain": ("test-both",),
    }


def test_resources_and_no_training_upstream():
    steps = [Step("test-ext"), Step("test-ext-gpu", resource="gpu"), Step("train", short=False)]
    assert group_steps(steps) == {"start": ("test-ext",), "start-on-gpu": ("test-ext-gpu",)}


def test_long_names_are_shortened_stably():
    many = [Step(f"finetune-a-rather-long-name-{i}", short=False) for i in range(4)]
    steps = [*many, Step("test", [s.key for s in many])]
    (name,) = group_steps(steps)
    assert len(name) <= MAX_NAME
    assert group_steps(list(reversed(steps[:4])) + [steps[4]]) == {name: ("test",)}


def test_demo_groups_are_recorded_in_the_plan():
    _, plan = validate(EXAMPLES / "demo.yaml")
    short = {s.key for s in plan.steps if s.short}
    assert short == {s.key for s in plan.steps if s.op.name in ("freeze", "change-bias", "test")}
    assert sorted(k for keys in plan.groups.values() for k in keys) == sorted(short)
    assert plan.group_of("freeze-water") == "after-pretrain"
    assert plan.group_of("pretrain") is None
    assert plan.record()["groups"] == {name: list(keys) for name, keys in plan.groups.items()}
