"""Run summaries: written atomically, found by id or path, readable while a run is in progress."""

from __future__ import annotations

import json

import pytest

from lamflow.ops.runtime.files import resolve_output
from lamflow.workflows.engines.summary import RunSummary, initial_summary, read_summary
from lamflow.workflows.errors import RunError, UsageError
from lamflow.workflows.planner import build_plan, load_spec
from tests.conftest import EXAMPLES, run_cli


@pytest.fixture
def running_run(tmp_path):
    plan = build_plan(load_spec(EXAMPLES / "demo.yaml"))
    summary = initial_summary(plan, "demo-1", "examples/demo.yaml", "0" * 64, "local")
    summary.status = "Running"
    summary.steps["pretrain"].phase = "Running"
    run_dir = tmp_path / "runs" / "demo-1"
    run_dir.mkdir(parents=True)
    summary.write(run_dir)
    return tmp_path, run_dir


def test_initial_summary_lists_every_step_pending():
    plan = build_plan(load_spec(EXAMPLES / "demo.yaml"))
    summary = initial_summary(plan, "r", "s.yaml", "x", "local")
    assert list(summary.steps) == [s.key for s in plan.steps]
    assert {r.phase for r in summary.steps.values()} == {"Pending"}
    assert summary.steps["finetune-gete"].depends == ["pretrain"]


def test_read_by_path_and_by_id(running_run):
    root, run_dir = running_run
    by_path = read_summary(run_dir, root / "elsewhere")[1]
    by_id = read_summary("demo-1", root / "runs")[1]
    assert by_path == by_id and by_id.status == "Running"
    assert not list(run_dir.glob("*.tmp")), "writes are atomic (temp file renamed)"
    with pytest.raises(UsageError, match="no such run"):
        read_summary("demo-2", root / "runs")


def test_corrupt_summary_is_a_run_error(tmp_path):
    (tmp_path / "summary.json").write_text("{not json")
    with pytest.raises(RunError, match="unreadable run summary"):
        read_summary(tmp_path, tmp_path)


def test_status_cli_on_a_running_run(running_run):
    root, _ = running_run
    result = run_cli("status", "demo-1", cwd=root)
    assert result.returncode == 0, result.stderr
    assert "Running" in result.stdout and "pretrain" in result.stdout
    data = json.loads(run_cli("status", "demo-1", "--output", "json", cwd=root).stdout)
    assert RunSummary.model_validate(data).steps["freeze-water"].phase == "Pending"


def test_artifact_path_follows_the_dflow_catalog(tmp_path):
    art = tmp_path / "model"
    (art / "work").mkdir(parents=True)
    (art / "work" / "model.pth").write_bytes(b"x")
    (art / ".dflow").mkdir()
    (art / ".dflow" / "uuid").write_text(
        json.dumps({"path_list": [{"dflow_list_item": "work/model.pth", "order": 0}]})
    )
    assert resolve_output(art) == (art / "work" / "model.pth").resolve()
    plain = tmp_path / "plain.txt"
    plain.write_text("x")
    assert resolve_output(plain) == plain.resolve()


def test_summaries_written_by_lamflow_0_1_still_read(tmp_path):
    from lamflow.workflows.engines.summary import RunSummary

    old = {"step": "t", "model": "pretrain.water", "dataset": "d", "refit_bias_on": "gete", "metrics": {}}
    summary = RunSummary.model_validate({"run_id": "r", "spec": "s", "spec_sha256": "x", "engine": "local",
                                         "steps": {}, "tests": [old]})  # fmt: skip
    assert summary.tests[0].change_bias_on == "gete"
    assert "refit_bias_on" not in summary.model_dump_json()
