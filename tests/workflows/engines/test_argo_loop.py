"""A loop on the Argo engine, as `lamflow status` follows it: each iteration's steps by their iteration's
key, and the loop's rows (counts, fractions, held-out RMSE, decision, time by kind) from the decision
steps' output parameters and the pods' times — the same table a local run shows. The controller's node
records are written by the test (the HTTP double does not run recursive templates)."""

from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone

import yaml

from tests.conftest import run_cli
from tests.workflows.active_spec import active_spec

T0 = datetime(2026, 12, 1, tzinfo=timezone.utc)


def _stamp(seconds: float) -> str:
    return (T0 + timedelta(seconds=seconds)).isoformat().replace("+00:00", "Z")


def _pod(key: str, task: str, template: str, start: float, seconds: float, **fields) -> dict:
    """A pod node as the controller records it: the task's name, the iteration's key in dflow_key."""
    node = {
        "id": f"n-{key}",
        "name": f"wf.{key}",
        "displayName": task,
        "templateName": template,
        "type": "Pod",
        "phase": "Succeeded",
        "startedAt": _stamp(start),
        "finishedAt": _stamp(start + seconds),
        "inputs": {"parameters": [{"name": "dflow_key", "value": key}]},
    }
    node.update(fields)
    return node


def _decision(stop: bool, reason: str, explored: int, accurate: int, rmse: float) -> dict:
    record = {
        "stop": stop, "converged": False, "reason": reason, "accurate_fraction": accurate / explored,
        "selection": {"explored": explored, "accurate": accurate, "candidate": explored - accurate,
                      "failed": 0, "picked": 2},
        "labelling": {"labelled": 2, "not_converged": 0, "failed": 0}, "test_force_rmse": rmse,
    }  # fmt: skip
    values = {"stop": json.dumps(stop), "converged": "false", "reason": reason, "record": json.dumps(record)}
    return {"parameters": [{"name": k, "value": v} for k, v in values.items()]}


def test_status_of_an_argo_run_shows_each_iteration_and_the_loops_rows(argo, argo_env, tmp_path, write_spec):
    run_dir = tmp_path / "run"
    spec = write_spec(yaml.safe_dump(active_spec()))
    out = run_cli("submit", str(spec), "--engine", "argo", "--run-dir", str(run_dir), env=argo_env)
    assert out.returncode == 0, out.stdout + out.stderr
    (loop,) = json.loads((run_dir / "plan.json").read_text())["loops"]  # the loop's shape, for status
    body = [(step["key"], step["op"]) for step in loop["body"]]
    name = json.loads((run_dir / "summary.json").read_text())["argo"]["name"]
    argo.scripted.add(name)
    reasons = ["iteration 1: accurate fraction 0.250 < 0.99", "not converged: max_iterations (2) reached"]
    nodes, clock = [_pod("pretrain", "pretrain", "pretrain", 0, 30)], 30.0
    for n, (explored, accurate, rmse) in enumerate([(8, 2, 0.4), (12, 6, 0.2)], start=1):
        for key, op in body:
            full = f"w-i00{n}-{key}"
            outputs = (
                _decision(n == 2, reasons[n - 1], explored, accurate, rmse) if key == "converge" else None
            )
            nodes.append(
                _pod(f"active-{full}", key, op, clock, 10, **({"outputs": outputs} if outputs else {}))
            )
            clock += 11  # one second between steps: the engine's own time
    status = argo.workflows[name]["status"]
    status.update(phase="Running", startedAt=_stamp(0), nodes={node["id"]: node for node in nodes})

    shown = run_cli("status", str(run_dir), env=argo_env)
    assert shown.returncode == 0, shown.stdout + shown.stderr
    assert "active-w-i002-train-1" in shown.stdout and "Loop active-w: iterations" in shown.stdout
    assert "not converged: max_iterations (2) reached" in shown.stdout
    summary = json.loads((run_dir / "summary.json").read_text())
    record = summary["loops"]["active-w"]
    assert record["stopped"] and not record["converged"] and record["reason"] == reasons[1]
    rows = record["iterations"]
    assert [(r["iteration"], r["explored"], r["accurate_fraction"], r["picked"]) for r in rows] == [
        (1, 8, 0.25, 2),
        (2, 12, 0.5, 2),
    ]
    assert [r["decision"] for r in rows] == reasons
    assert [r["test_force_rmse"] for r in rows] == [0.4, 0.2]
    trainings = sum(1 for _, op in body if op in ("finetune", "scratch"))
    for row in rows:
        assert row["seconds"]["training"] == 10 * trainings  # each pod's own time, by kind
    # the seconds between the pods; from iteration 2 on, counted from the end of the one before
    assert [row["seconds"]["orchestration"] for row in rows] == [len(body) - 1, len(body)]
    as_json = json.loads(run_cli("status", str(run_dir), "--output", "json", env=argo_env).stdout)
    assert as_json["loops"]["active-w"]["iterations"] == rows
