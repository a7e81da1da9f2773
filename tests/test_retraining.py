"""The CI-triggered retraining example (.github/workflows/retrain.yml): valid against GitHub's workflow
schema (check-jsonschema's vendored copy), calls only commands lamflow has, takes every credential from
GitHub secrets, and its promotion script picks the run's new model of the configured channel."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import yaml

from lamflow.workflows.argo.cron import check_schedule
from tests.conftest import REPO

WORKFLOW = REPO / ".github" / "workflows" / "retrain.yml"
CHECK_JSONSCHEMA = Path(sys.executable).with_name("check-jsonschema")


def workflow() -> dict:
    return yaml.safe_load(WORKFLOW.read_text())


def steps() -> list[dict]:
    return workflow()["jobs"]["retrain"]["steps"]


def test_valid_against_the_github_actions_workflow_schema():
    out = subprocess.run(
        [str(CHECK_JSONSCHEMA), "--builtin-schema", "vendor.github-workflows", str(WORKFLOW)],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert out.returncode == 0, out.stdout + out.stderr


def test_triggers_on_data_pushes_and_a_valid_schedule():
    triggers = workflow()[True]  # YAML 1.1 reads the key `on` as true
    assert "data/**" in triggers["push"]["paths"]
    for entry in triggers["schedule"]:
        check_schedule(entry["cron"])


def test_every_lamflow_command_exists_and_the_sequence_is_push_submit_download_promote():
    import typer.main

    from lamflow.workflows.cli.app import app

    root = typer.main.get_command(app)
    script = "\n".join(step.get("run", "") for step in steps())
    calls = re.findall(r"\blamflow ([a-z-]+)(?: ([a-z-]+))?", script)
    assert calls
    for verb, sub in calls:
        assert verb in root.commands, f"lamflow {verb}"  # type: ignore[attr-defined]
        group = root.commands[verb]  # type: ignore[attr-defined]
        if hasattr(group, "commands"):
            assert sub in group.commands, f"lamflow {verb} {sub}"
    order = [f"{v} {s}".strip() if v in ("data", "models") else v for v, s in calls]
    wanted = ["data push", "submit", "download", "models promote"]
    positions = [order.index(w) for w in wanted]
    assert positions == sorted(positions)
    assert "--engine argo --wait" in script


def test_credentials_come_from_github_secrets_only():
    env = workflow()["jobs"]["retrain"]["env"]
    for name in ("LAMFLOW_ARGO_TOKEN", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
        assert env[name] == "${{ secrets.%s }}" % name  # noqa: UP031
    assert workflow()["jobs"]["retrain"]["if"] == "${{ vars.LAMFLOW_ARGO_SERVER != '' }}"


def test_promotion_script_picks_the_runs_new_model_of_the_configured_channel(tmp_path):
    (step,) = [s for s in steps() if s.get("name", "").startswith("Promote")]
    snippet = step["run"].split("<<'PY'\n", 1)[1].split("\nPY\n", 1)[0]
    snippet = "\n".join(line.removeprefix("          ") for line in snippet.splitlines())
    (tmp_path / "summary.json").write_text(json.dumps({"registered": ["m1", "m2"]}))
    rows = [
        {"id": "m1", "channel": "retrain/pretrain.water"},
        {"id": "m2", "channel": "retrain/finetune.gete"},
        {"id": "m0", "channel": "retrain/finetune.gete"},  # an older run's model
    ]
    (tmp_path / "models.json").write_text(json.dumps(rows))
    out = subprocess.run(
        [sys.executable, "-c", snippet, str(tmp_path / "summary.json"), str(tmp_path / "models.json")],
        capture_output=True, text=True, env={"PROMOTE": "finetune.gete"}, timeout=60,
    )  # fmt: skip
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["m2"]
