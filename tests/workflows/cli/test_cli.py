"""The ``lamflow`` command: exit codes, one-line errors, nothing written on bad input (in this process
through tests.conftest.run_cli; the installed entry point itself in a process of its own, once)."""

from __future__ import annotations

import json
import subprocess

import pytest

from tests.conftest import EXAMPLES, LAMFLOW, REPO, minimal_spec, run_cli, run_cli_process


def assert_one_line_error(result, *fragments):
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert "Traceback" not in result.stderr
    for fragment in fragments:
        assert fragment in lines[0]


def test_help_lists_commands():
    result = run_cli("--help")
    assert result.returncode == 0
    for command in ("validate", "schema", "submit", "status"):
        assert command in result.stdout


def test_the_installed_entry_point_in_a_bare_environment(tmp_path, write_spec):
    """The console script as a user's shell starts it, with nothing but PATH and HOME set."""
    import os

    bare = {"PATH": os.environ["PATH"], "HOME": str(tmp_path)}
    result = subprocess.run([str(LAMFLOW), "--version"], env=bare, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0 and result.stdout.startswith("lamflow "), result.stderr
    bad = write_spec({"name": "x", "datasets": {}, "stages": {"nonsense": {}}})
    result = subprocess.run(
        [str(LAMFLOW), "validate", str(bad)], env=bare, capture_output=True, text=True, timeout=60
    )
    assert_one_line_error(result, "stages.nonsense")
    assert run_cli_process("validate", str(EXAMPLES / "demo.yaml")).returncode == 0


def test_validate_ok():
    result = run_cli("validate", str(EXAMPLES / "demo.yaml"))
    assert result.returncode == 0, result.stderr
    assert "9 steps" in result.stdout


def test_schema_prints_the_committed_schema():
    result = run_cli("schema")
    assert result.returncode == 0
    assert result.stdout == (REPO / "schemas" / "lamflow.schema.json").read_text()
    assert json.loads(result.stdout)["title"] == "lamflow spec"


def test_dry_run_prints_the_dag(tmp_path):
    result = run_cli("submit", str(EXAMPLES / "demo.yaml"), "--dry-run", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "finetune-gete" in result.stdout and "after pretrain" in result.stdout
    assert not (tmp_path / "runs").exists()
    as_json = json.loads(
        run_cli("submit", str(EXAMPLES / "demo.yaml"), "--dry-run", "--output", "json").stdout
    )
    assert [s["key"] for s in as_json["steps"]][:2] == ["pretrain", "freeze-water"]


@pytest.mark.parametrize(
    ("mutate", "fragments"),
    [
        (
            lambda s: s["stages"]["finetune"][0]["from"].update(head="gete"),
            ["spec.yaml: stages.finetune[0].from.head: no pretrain head 'gete'"],
        ),
        (lambda s: s.update(unknown=1), ["spec.yaml: unknown: unknown key 'unknown'"]),
        (
            lambda s: s["datasets"]["gete"].update(path="/nowhere"),
            ["datasets.gete.path: /nowhere: does not exist"],
        ),
    ],
)
def test_bad_spec_exits_2_and_writes_nothing(tmp_path, write_spec, mutate, fragments):
    spec = minimal_spec()
    mutate(spec)
    path = write_spec(spec)
    for command in (["validate", str(path)], ["submit", str(path), "--run-dir", str(tmp_path / "myrun")]):
        result = run_cli(*command, cwd=tmp_path)
        assert_one_line_error(result, *fragments)
        assert not (tmp_path / "runs").exists() and not (tmp_path / "myrun").exists()


def test_missing_and_invalid_files(tmp_path):
    assert_one_line_error(
        run_cli("submit", str(tmp_path / "none.yaml"), cwd=tmp_path), "none.yaml: no such file"
    )
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: [oops\n")
    assert_one_line_error(run_cli("validate", str(bad)), "bad.yaml: invalid YAML: line 2")


def test_existing_run_dir_is_never_overwritten(tmp_path, write_spec):
    run_dir = tmp_path / "taken"
    run_dir.mkdir()
    (run_dir / "keep.txt").write_text("precious")
    result = run_cli("submit", str(write_spec(minimal_spec())), "--run-dir", str(run_dir))
    assert_one_line_error(result, "already exists and is not empty")
    assert (run_dir / "keep.txt").read_text() == "precious"


def test_status_of_unknown_run(tmp_path):
    assert_one_line_error(run_cli("status", "no-such-run", cwd=tmp_path), "no-such-run: no such run")


def test_bad_setting_is_bad_input(tmp_path, write_spec):
    result = run_cli("submit", str(write_spec(minimal_spec())), env={"LAMFLOW_LOCAL_WORKERS": "zero"})
    assert result.returncode == 2
    assert "LAMFLOW_LOCAL_WORKERS" in result.stderr and "Traceback" not in result.stderr


def test_unknown_option_is_usage_error():
    result = run_cli("submit", "--frobnicate")
    assert result.returncode == 2 and "Traceback" not in result.stderr


def test_metrics_table_shows_virials_and_overlap_marks():
    from rich.console import Console

    from lamflow.workflows.cli.render import metrics_table
    from lamflow.workflows.engines.summary import RunSummary

    metrics = {"energy_rmse_per_atom": 1e-3, "force_rmse": 0.1, "virial_rmse_per_atom": 2e-3, "frames": 3}
    summary = RunSummary.model_validate(
        {
            "run_id": "r", "spec": "s", "spec_sha256": "x", "engine": "local", "steps": {},
            "tests": [{"step": "t", "model": "finetune.a", "dataset": "d", "overlap": True,
                       "metrics": metrics}],
        }
    )  # fmt: skip
    console = Console(record=True, width=250)
    console.print(metrics_table(summary))
    text = console.export_text()
    assert "V RMSE meV/atom" in text and "2.0" in text and "overlaps training data" in text


def test_version_and_the_help_lists_every_stage():
    from importlib.metadata import version

    from typer.testing import CliRunner

    from lamflow.workflows.cli.app import STAGES, app
    from lamflow.workflows.stages import all_stages

    runner = CliRunner()
    out = runner.invoke(app, ["--version"])
    assert out.exit_code == 0 and out.stdout.strip() == f"lamflow {version('lamflow')}"
    assert set(STAGES) == {stage.key for stage in all_stages()}
    text = " ".join(runner.invoke(app, ["--help"]).stdout.split())
    assert f"Stages: {', '.join(STAGES)}." in text
