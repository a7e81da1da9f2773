"""Stages are discovered from workflows/stages/, ordered, and each has its section in the spec's `stages:`
(workflows/spec/stages.py), in the same order."""

from __future__ import annotations

from typing import Any, get_args

from lamflow.workflows.spec.spec import Spec
from lamflow.workflows.spec.stages import Stages
from lamflow.workflows.stages import all_stages
from lamflow.workflows.stages.base import Stage


def test_stages_are_discovered_in_order():
    assert [s.key for s in all_stages()] == [
        "pretrain",
        "finetune",
        "active",
        "distill",
        "compress",
        "transfer",
        "test",
    ]
    orders = [s.order for s in all_stages()]
    assert orders == sorted(orders) and len(set(orders)) == len(orders)


def test_spec_stages_section_has_one_field_per_stage():
    fields = Stages.model_fields
    assert list(fields) == [s.key for s in all_stages()]  # the stage modules and the spec agree
    assert Spec.model_fields["stages"].annotation is Stages
    for stage in all_stages():
        assert fields[stage.key].description, stage.key
        # the section type a stage checks and plans is the one the spec parses
        (generic,) = [b for b in type(stage).__orig_bases__ if getattr(b, "__origin__", None) is Stage]
        (section,) = get_args(generic)
        assert _same(section, fields[stage.key].annotation), stage.key


def _same(a: Any, b: Any) -> bool:
    return a == b or str(a) == str(b)


def test_each_stage_uses_one_name_for_spec_key_module_and_op():
    from lamflow.workflows.planner import build_plan, load_spec
    from tests.conftest import EXAMPLES

    steps = [
        s for name in ("demo.yaml", "distill.yaml") for s in build_plan(load_spec(EXAMPLES / name)).steps
    ]
    for step in steps:
        assert step.key.startswith(step.op.name), f"{step.key} should start with its op name {step.op.name}"
        assert step.op.__module__.endswith("." + step.op.name.replace("-", "_"))


def test_stage_checks_run_once_per_validate(write_spec, tmp_path, monkeypatch):
    """check() (names, external checkpoints) runs once; the guards run after the datasets are read."""
    from lamflow.workflows.api import validate
    from lamflow.workflows.stages import finetune
    from tests.conftest import minimal_spec
    from tests.fake_dp import save_checkpoint

    save_checkpoint(tmp_path / "ext.pt", {"type_map": ["Ge", "Te"]}, 9, 1e-3)
    reads = []
    real = finetune.read_checkpoint
    monkeypatch.setattr(finetune, "read_checkpoint", lambda path: reads.append(path) or real(path))
    spec = minimal_spec()
    spec["stages"]["finetune"][0]["from"] = {"model_file": str(tmp_path / "ext.pt")}
    validate(write_spec(spec))
    assert reads == [tmp_path / "ext.pt"]
