"""Stages are discovered from workflows/stages/, ordered, and make up the spec's `stages:` section."""

from __future__ import annotations

from lamflow.workflows.spec.spec import Spec
from lamflow.workflows.stages import all_stages, stages_model


def test_stages_are_discovered_in_order():
    assert [s.key for s in all_stages()] == [
        "pretrain",
        "finetune",
        "distill",
        "compress",
        "transfer",
        "test",
    ]
    orders = [s.order for s in all_stages()]
    assert orders == sorted(orders) and len(set(orders)) == len(orders)


def test_spec_stages_section_has_one_field_per_stage():
    fields = stages_model().model_fields
    assert list(fields) == [s.key for s in all_stages()]
    assert Spec.model_fields["stages"].annotation is stages_model()
    for stage in all_stages():
        assert fields[stage.key].description == stage.description


def test_each_stage_uses_one_name_for_spec_key_module_and_op():
    from lamflow.workflows.compile.compiler import build_plan
    from lamflow.workflows.spec import load_spec
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
