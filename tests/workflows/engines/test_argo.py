"""`lamflow submit --engine argo` end to end against an HTTP double of the Argo Server (tests/argo_double.py:
not Argo; it validates every created workflow against Argo's JSON schema) and a real S3 endpoint (moto):
inputs uploaded to the store's bucket, the workflow created with the bearer token in the header only,
followed to its end, status/logs/watch/stop, and the bad-configuration refusals."""

from __future__ import annotations

import json
import socket

import pytest

from tests.conftest import EXAMPLES, run_cli
from tests.workflows.engines.conftest import TOKEN


def submit(env, *extra, run_dir):
    return run_cli(
        "submit", str(EXAMPLES / "demo.yaml"), "--engine", "argo", "--run-dir", str(run_dir), *extra, env=env
    )


def created(argo) -> list[dict]:
    return [json.loads(r.body)["workflow"] for r in argo.requests if r.method == "POST"]


TEST_FT = "test-finetune-gete-on-gete-test"


def group_outputs(metrics: dict | None = None, failed: dict | None = None) -> list[dict]:
    """The output parameters the in-pod runner (ops/group.py) gives the after-finetune-gete group."""
    phases = {TEST_FT: {"phase": "Failed", "error": failed[TEST_FT]} if failed else {"phase": "Succeeded"}}
    outputs = [{"name": "phases", "value": json.dumps(phases)}]
    if metrics is not None:
        outputs.append({"name": f"{TEST_FT}--metrics", "value": json.dumps(metrics)})
    return outputs


def test_submit_wait_uploads_inputs_creates_a_valid_workflow_and_follows_it(argo, argo_env, s3, tmp_path):
    argo.outputs["after-finetune-gete"] = group_outputs({"force_rmse": 0.42})
    run_dir = tmp_path / "r1"
    out = submit(argo_env, "--wait", run_dir=run_dir)
    assert out.returncode == 0, out.stdout + out.stderr
    assert argo.invalid == [], "the double refused the workflow as schema-invalid"
    (workflow,) = created(argo)
    name = next(iter(argo.workflows))
    # every staged input is in the store's bucket, under the key the workflow parameter names
    parameters = {p["name"]: p["value"] for p in workflow["spec"]["arguments"]["parameters"]}
    objects = {o["Key"] for o in s3.client().list_objects_v2(Bucket=s3.test_bucket)["Contents"]}
    for parameter in (
        "input-datasets-gete",
        "input-datasets-gete-test",
        "input-datasets-water-water-valid-molecules",
    ):
        key = parameters[parameter]
        assert key.startswith("lab/inputs/") and f"{key}.complete" in objects
        assert any(o.startswith(key + "/") and o.endswith("coord.npy") for o in objects)
        catalog = s3.client().get_object(Bucket=s3.test_bucket, Key=f"{key}/.dflow/lamflow-inputs")["Body"]
        orders = [item["order"] for item in json.loads(catalog.read())["path_list"]]  # dflow: {name: folder}
        assert orders and all(any(o.startswith(f"{key}/{name}/") for o in objects) for name in orders)
    assert workflow["metadata"]["labels"]["lamflow.io/run-id"] == "r1"
    (pretrain,) = [t for t in workflow["spec"]["templates"] if t["name"] == "pretrain"]
    carry = {e["name"]: e.get("value") for e in pretrain["script"]["env"]}
    assert carry["LAMFLOW_CHECKPOINT_URI"].startswith(
        f"s3://{s3.test_bucket}/lab/checkpoints/{{{{workflow.uid}}}}/"
    )
    assert {t["script"]["image"] for t in workflow["spec"]["templates"] if "script" in t} == {
        "registry.example.org/lamflow-ops:test-cuda"
    }
    # followed to the end: every step, with Argo's times, in a summary shaped like a local run's
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["engine"] == "argo" and summary["status"] == "Succeeded"
    assert summary["argo"]["name"] == name and summary["argo"]["ui"] == f"{argo.url}/workflows/lab/{name}"
    assert {s["phase"] for s in summary["steps"].values()} == {"Succeeded"}
    assert all(s["duration_s"] > 0 for s in summary["steps"].values())
    assert summary["steps"]["test-finetune-gete-on-gete-test"]["parameters"] == {
        "metrics": {"force_rmse": 0.42}
    }
    assert "✓ finetune-gete" in out.stdout and "▶ pretrain" in out.stdout
    assert (run_dir / "workflow.yaml").exists()


def test_credentials_never_leave_this_machine_except_the_token_in_its_header(argo, argo_env, tmp_path):
    env = {**argo_env, "AWS_SESSION_TOKEN": "session-secret-99"}
    assert submit(env, run_dir=tmp_path / "r").returncode == 0
    secrets = [TOKEN, env["AWS_ACCESS_KEY_ID"], env["AWS_SECRET_ACCESS_KEY"], "session-secret-99"]
    for request in argo.requests:
        assert request.headers.get("Authorization") == f"Bearer {TOKEN}"
        for secret in secrets:
            assert secret not in request.body and secret not in request.path
    text = (tmp_path / "r" / "workflow.yaml").read_text() + (tmp_path / "r" / "summary.json").read_text()
    assert not any(secret in text for secret in secrets)


def test_without_wait_submit_prints_the_name_and_link_then_status_watch_logs_follow(argo, argo_env, tmp_path):
    run_dir = tmp_path / "r"
    out = submit(argo_env, run_dir=run_dir)
    assert out.returncode == 0, out.stderr
    name = next(iter(argo.workflows))
    assert f"submitted {name} (lab); {argo.url}/workflows/lab/{name}" in out.stdout
    assert json.loads((run_dir / "summary.json").read_text())["status"] == "Running"
    status = run_cli("status", str(run_dir), "--output", "json", env=argo_env)
    assert status.returncode == 0 and json.loads(status.stdout)["argo"]["phase"] == "Running"
    watched = run_cli("watch", str(run_dir), env=argo_env)
    assert watched.returncode == 0, watched.stdout + watched.stderr
    assert "✓ test-finetune-gete-on-gete-test" in watched.stdout
    logs = run_cli("logs", str(run_dir), "--step", "pretrain", env=argo_env)
    assert logs.returncode == 0 and logs.stdout.strip() == f"{name}-pretrain-1: running pretrain"


def test_a_failing_step_fails_the_run_with_its_message_and_skips_what_depends_on_it(argo, argo_env, tmp_path):
    argo.fail.add("finetune-gete")
    out = submit(argo_env, "--wait", run_dir=tmp_path / "r")
    assert out.returncode == 1
    summary = json.loads((tmp_path / "r" / "summary.json").read_text())
    assert summary["status"] == "Failed" and summary["steps"]["finetune-gete"]["phase"] == "Failed"
    assert summary["steps"]["finetune-gete"]["error"] == "Error (exit code 1)"
    assert summary["steps"]["test-finetune-gete-on-gete-test"]["phase"] == "Skipped"
    assert summary["steps"]["freeze-water"]["phase"] == "Succeeded"


def test_a_failing_step_in_a_group_pod_fails_alone(argo, argo_env, tmp_path):
    argo.fail.add("after-finetune-gete")
    argo.outputs["after-finetune-gete"] = group_outputs(failed={TEST_FT: "DpError: dp test exited with 1"})
    out = submit(argo_env, "--wait", run_dir=tmp_path / "r")
    assert out.returncode == 1
    steps = json.loads((tmp_path / "r" / "summary.json").read_text())["steps"]
    assert steps[TEST_FT]["phase"] == "Failed" and steps[TEST_FT]["error"] == "DpError: dp test exited with 1"
    assert steps["finetune-gete"]["phase"] == "Succeeded" and steps["freeze-water"]["phase"] == "Succeeded"


def test_without_groups_every_step_is_a_pod(argo, argo_env, tmp_path):
    assert submit({**argo_env, "LAMFLOW_GROUP": "0"}, "--wait", run_dir=tmp_path / "r").returncode == 0
    (workflow,) = created(argo)
    _, plan = __import__("lamflow.workflows.api", fromlist=["validate"]).validate(EXAMPLES / "demo.yaml")
    assert [t["name"] for t in workflow["spec"]["templates"][0]["dag"]["tasks"]] == [
        s.key for s in plan.steps
    ]
    steps = json.loads((tmp_path / "r" / "summary.json").read_text())["steps"]
    assert {s["phase"] for s in steps.values()} == {"Succeeded"} and all(
        s["group"] is None for s in steps.values()
    )


def test_stop_stops_the_workflow(argo, argo_env, tmp_path):
    run_dir = tmp_path / "r"
    assert submit(argo_env, run_dir=run_dir).returncode == 0
    stopped = run_cli("stop", str(run_dir), env=argo_env)
    assert stopped.returncode == 0, stopped.stderr
    assert [r.path for r in argo.requests if r.method == "PUT"] == [
        f"/api/v1/workflows/lab/{next(iter(argo.workflows))}/stop"
    ]
    status = run_cli("status", str(run_dir), "--output", "json", env=argo_env)
    assert status.returncode == 1 and json.loads(status.stdout)["status"] == "Failed"


def test_resubmit_runs_a_finished_workflow_again_and_refuses_a_local_run(argo, argo_env, tmp_path):
    argo.fail.add("finetune-gete")
    run_dir = tmp_path / "r"
    assert submit(argo_env, "--wait", run_dir=run_dir).returncode == 1
    argo.fail.clear()
    again = run_cli("resubmit", str(run_dir), env=argo_env)
    assert again.returncode == 0, again.stderr
    first, second = list(argo.workflows)
    assert f"resubmitted as {second} (lab)" in again.stdout
    watched = run_cli("watch", str(run_dir), env=argo_env)
    assert watched.returncode == 0, watched.stdout + watched.stderr
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["argo"]["name"] == second and summary["status"] == "Succeeded" and summary["attempts"] == 2
    from lamflow.workflows.api import validate
    from lamflow.workflows.engines.summary import initial_summary

    local = tmp_path / "local"
    local.mkdir()
    _, plan = validate(EXAMPLES / "demo.yaml")
    initial_summary(plan, "local", "demo.yaml", "0" * 64, "local").write(local)
    resumed = run_cli("resume", str(run_dir), env=argo_env)
    assert resumed.returncode == 2 and "an Argo run; run it again with `lamflow resubmit" in resumed.stderr
    refused = run_cli("resubmit", str(local), env=argo_env)
    assert refused.returncode == 2 and "a local run; continue it with `lamflow resume`" in refused.stderr


def _artifact_tgz(name: str, files: dict[str, bytes], items: list[str] | None = None) -> bytes:
    """An output artifact as Argo archives it (a .tgz of the folder dflow filled in the pod: the files
    at their paths under the step's directory, and dflow's .dflow catalog naming them, or ``items``)."""
    import io
    import tarfile

    listed = list(files) if items is None else items
    catalog = {"path_list": [{"dflow_list_item": path, "order": i} for i, path in enumerate(listed)]}
    members = {f"{name}/.dflow/catalog": json.dumps(catalog).encode()}
    members.update({f"{name}/{path}": data for path, data in files.items()})
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        for path, data in members.items():
            info = tarfile.TarInfo(path)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


def test_download_brings_outputs_into_the_local_layout_and_the_registry(argo, argo_env, s3, tmp_path):
    model = b"frozen model bytes"
    s3.client().put_object(
        Bucket=s3.test_bucket,
        Key="runs/demo/freeze-water/model.tgz",
        Body=_artifact_tgz("freeze-water--model", {"pretrain-water.pth": model}),
    )
    s3.client().put_object(Bucket=s3.test_bucket, Key="runs/demo/freeze-water/main.log", Body=b"freeze log\n")
    argo.artifacts["after-pretrain"] = [  # the group pod's outputs are named <step>--<output>
        {
            "name": "freeze-water--model",
            "path": "/tmp/outputs/artifacts/freeze-water--model",
            "s3": {"key": "runs/demo/freeze-water/model.tgz"},
        },
        {"name": "main-logs", "s3": {"key": "runs/demo/freeze-water/main.log"}},  # archiveLogs: true
    ]
    argo.outputs["after-finetune-gete"] = group_outputs({"force_rmse": 0.42})
    run_dir = tmp_path / "r"
    assert submit(argo_env, "--wait", run_dir=run_dir).returncode == 0
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["models"] == {}, "models stay remote until downloaded"
    assert [t["metrics"] for t in summary["tests"] if t["step"] == "test-finetune-gete-on-gete-test"] == [
        {"force_rmse": 0.42}
    ]
    elsewhere = run_cli(
        "download", str(run_dir), "--step", "freeze-water", "-o", str(tmp_path / "copy"), env=argo_env
    )
    assert elsewhere.returncode == 0, elsewhere.stderr
    copied = tmp_path / "copy" / "steps" / "freeze-water" / "outputs" / "artifacts" / "model"
    assert (copied / "pretrain-water.pth").read_bytes() == model
    out = run_cli("download", str(run_dir), env=argo_env)
    assert out.returncode == 0, out.stderr
    members = 6  # the after-pretrain pod's log is each of its steps' log.txt
    assert f"{1 + members} artifacts into" in out.stdout
    assert (run_dir / "steps" / "freeze-water" / "log.txt").read_text() == "freeze log\n"
    assert (run_dir / "steps" / "freeze-molecules" / "log.txt").read_text() == "freeze log\n"
    summary = json.loads((run_dir / "summary.json").read_text())
    assert (run_dir / summary["models"]["pretrain.water"]).read_bytes() == model
    assert summary["steps"]["freeze-water"]["outputs"]["model"].endswith("model/pretrain-water.pth")
    (row,) = [t for t in summary["tests"] if t["step"] == "test-finetune-gete-on-gete-test"]
    assert row["metrics"] == {"force_rmse": 0.42} and row["model"] == "finetune.gete"
    assert summary["registered"], "the downloaded model is in the registry"
    models = run_cli("models", "list", "--output", "json", env=argo_env)
    assert models.returncode == 0 and "pretrain.water" in models.stdout


def test_second_submit_of_the_same_data_uploads_nothing(argo, argo_env, s3, tmp_path):
    assert submit(argo_env, run_dir=tmp_path / "a").returncode == 0
    before = {
        o["Key"]: o["LastModified"] for o in s3.client().list_objects_v2(Bucket=s3.test_bucket)["Contents"]
    }
    assert submit(argo_env, run_dir=tmp_path / "b").returncode == 0
    after = {
        o["Key"]: o["LastModified"] for o in s3.client().list_objects_v2(Bucket=s3.test_bucket)["Contents"]
    }
    inputs = {k: v for k, v in after.items() if k.startswith("lab/inputs/")}
    assert inputs == {k: v for k, v in before.items() if k.startswith("lab/inputs/")}
    first, second = created(argo)
    assert first["spec"]["arguments"] == second["spec"]["arguments"]


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.mark.parametrize(
    ("change", "code", "message"),
    [
        ({"LAMFLOW_ARGO_TOKEN": "wrong"}, 2, "LAMFLOW_ARGO_TOKEN: the Argo server at"),
        ({"LAMFLOW_ARGO_SERVER": "http://127.0.0.1:{port}"}, 1, "LAMFLOW_ARGO_SERVER=http://127.0.0.1:"),
        ({"LAMFLOW_IMAGE": None}, 2, "LAMFLOW_IMAGE: not set"),
        ({"LAMFLOW_ARGO_SERVER": None}, 2, "LAMFLOW_ARGO_SERVER: not set"),
        ({"LAMFLOW_STORE": "{tmp}/store"}, 2, "the Argo engine needs an s3://bucket/prefix store"),
    ],
)
def test_bad_configuration_is_one_line_and_nothing_is_submitted_or_uploaded(
    argo, argo_env, s3, tmp_path, change, code, message
):
    env = dict(argo_env)
    for key, value in change.items():
        if value is None:
            env.pop(key)
        else:
            env[key] = value.format(port=_closed_port(), tmp=tmp_path)
    out = submit(env, run_dir=tmp_path / "r")
    assert out.returncode == code, out.stdout + out.stderr
    errors = [
        line for line in out.stderr.splitlines() if not line.startswith("notice: ")
    ]  # the spec's notices
    assert message in out.stderr and len(errors) == 1 and "Traceback" not in out.stderr
    assert argo.workflows == {}
    assert "Contents" not in s3.client().list_objects_v2(Bucket=s3.test_bucket)


def test_download_refuses_an_archive_that_would_write_outside_the_run(argo, argo_env, s3, tmp_path):
    import io
    import tarfile

    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        info = tarfile.TarInfo("../../escaped.txt")
        info.size = 3
        tar.addfile(info, io.BytesIO(b"bad"))
    s3.client().put_object(
        Bucket=s3.test_bucket, Key="runs/demo/freeze-water/model.tgz", Body=buffer.getvalue()
    )
    argo.artifacts["after-pretrain"] = [
        {"name": "freeze-water--model", "s3": {"key": "runs/demo/freeze-water/model.tgz"}}
    ]
    run_dir = tmp_path / "r"
    assert submit(argo_env, "--wait", run_dir=run_dir).returncode == 0
    out = run_cli("download", str(run_dir), env=argo_env)
    assert out.returncode == 2 and "refusing archive member '../../escaped.txt'" in out.stderr
    assert not list(tmp_path.rglob("escaped.txt"))


LCURVE = b"# step rmse_trn rmse_e_trn rmse_f_trn lr\n0 1.0 0.1 0.9 1e-3\n10 0.5 0.05 0.45 1e-4\n"


def _pod_output(
    s3, argo, pod: str, name: str, files: dict[str, bytes], items: list[str] | None = None
) -> None:
    """An output artifact ``name`` of the pod ``pod``, archived in the bucket as Argo would."""
    key = f"runs/demo/{pod}/{name}.tgz"
    s3.client().put_object(Bucket=s3.test_bucket, Key=key, Body=_artifact_tgz(name, files, items))
    argo.artifacts.setdefault(pod, []).append({"name": name, "s3": {"key": key}})


def test_the_report_of_an_argo_run_fetches_only_what_it_draws(argo, argo_env, s3, tmp_path):
    """At the end of `submit --wait` (and by `lamflow report`), the test details and lcurve.out of the run
    are fetched for the parity and training-curve plots; models and checkpoints stay remote."""
    detail = {
        "detail.e_peratom.out": b"# sys/0000-gete: data_e pred_e\n-4.1 -4.0\n-4.2 -4.25\n",
        "detail.f.out": b"# sys/0000-gete: data_fx data_fy data_fz pred_fx pred_fy pred_fz\n"
        b"0.1 0.2 -0.3 0.12 0.18 -0.31\n-0.2 0.0 0.1 -0.19 0.01 0.12\n",
    }
    detail_files = {f"detail/{n}": d for n, d in detail.items()}  # a folder output: its folder is cataloged
    _pod_output(s3, argo, "after-finetune-gete", f"{TEST_FT}--detail", detail_files, ["detail"])
    _pod_output(s3, argo, "finetune-gete", "lcurve", {"work/lcurve.out": LCURVE})
    _pod_output(s3, argo, "after-pretrain", "freeze-water--model", {"m.pth": b"model"})
    argo.outputs["after-finetune-gete"] = group_outputs({"force_rmse": 0.42})
    run_dir = tmp_path / "r"
    out = submit({**argo_env, "LAMFLOW_REPORT": "1"}, "--wait", run_dir=run_dir)
    assert out.returncode == 0, out.stdout + out.stderr
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["report"] == "report/index.html" and summary["models"] == {}
    assert not (run_dir / "steps" / "freeze-water").exists(), "the model stayed remote"
    figures = json.loads((run_dir / "report" / "plots.json").read_text())
    drawn = {(f["kind"], f["file"]) for f in figures}
    assert {k for k, _ in drawn} == {"parity", "training-curve"}
    assert any(k == "parity" and name.endswith(f"-{TEST_FT}.png") for k, name in drawn)
    assert ("training-curve", "training-finetune-gete.png") in drawn

    # `lamflow report` again: nothing to fetch, the same figures
    again = run_cli("report", str(run_dir), "-o", str(tmp_path / "again"), env=argo_env)
    assert again.returncode == 0 and json.loads((tmp_path / "again" / "plots.json").read_text()) == figures


def test_lamflow_report_fetches_an_argo_runs_outputs_or_says_why_not(argo, argo_env, s3, tmp_path):
    _pod_output(s3, argo, "finetune-gete", "lcurve", {"work/lcurve.out": LCURVE})
    argo.outputs["after-finetune-gete"] = group_outputs({"force_rmse": 0.42})
    run_dir = tmp_path / "r"
    assert submit(argo_env, "--wait", run_dir=run_dir).returncode == 0  # the report is off in tests

    gone = run_cli("report", str(run_dir), "-o", str(tmp_path / "bare"),
                   env={**argo_env, "LAMFLOW_STORE": "s3://no-such-bucket/lab"})  # fmt: skip
    assert gone.returncode == 0, gone.stderr
    assert "notice: report without parity and training curves: outputs not fetched" in gone.stderr
    assert "no-such-bucket" in gone.stderr and (tmp_path / "bare" / "index.html").is_file()

    out = run_cli("report", str(run_dir), env=argo_env)
    assert out.returncode == 0, out.stderr
    figures = json.loads((run_dir / "report" / "plots.json").read_text())
    assert [f["file"] for f in figures] == ["training-finetune-gete.png"]
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["steps"]["finetune-gete"]["outputs"]["lcurve"].endswith("lcurve.out")


def test_a_pretraining_across_nodes_is_followed_through_its_job_and_reported_as_one_step(
    argo, argo_env, tmp_path, write_spec
):
    """``resources.pretrain.nodes: 2``: the double runs the stage, PyTorchJob and collect tasks; status
    shows the pretraining running while its job runs, and the step's time spans all three; a failed job
    fails the step with its message."""
    import yaml

    spec = yaml.safe_load((EXAMPLES / "demo.yaml").read_text())
    for dataset in spec["datasets"].values():
        dataset["path"] = str(EXAMPLES / dataset["path"])
    spec["resources"] = {"pretrain": {"nodes": 2, "gpus": 4}}
    path = write_spec(spec)
    run_dir = tmp_path / "r"
    out = run_cli("submit", str(path), "--engine", "argo", "--run-dir", str(run_dir), env=argo_env)
    assert out.returncode == 0, out.stdout + out.stderr
    assert argo.invalid == []
    status = run_cli("status", str(run_dir), "--output", "json", env=argo_env)  # one tick: the stage runs
    status = run_cli("status", str(run_dir), "--output", "json", env=argo_env)
    record = json.loads(status.stdout)["steps"]["pretrain"]
    assert record["phase"] == "Running" and "PyTorchJob" in record["summary"], record
    watched = run_cli("watch", str(run_dir), env=argo_env)
    assert watched.returncode == 0, watched.stdout + watched.stderr
    summary = json.loads((run_dir / "summary.json").read_text())
    pretrain = summary["steps"]["pretrain"]
    assert pretrain["phase"] == "Succeeded" and "pretrain-stage" not in summary["steps"]
    nodes = argo.workflows[summary["argo"]["name"]]["status"]["nodes"].values()
    stage_start = next(n["startedAt"] for n in nodes if n["displayName"] == "pretrain-stage")
    assert pretrain["started_at"] == stage_start and pretrain["duration_s"] >= 15  # 3 tasks of the double

    argo.fail.add("pretrain-job")
    failed = run_cli(
        "submit", str(path), "--engine", "argo", "--run-dir", str(tmp_path / "f"), "--wait", env=argo_env
    )
    assert failed.returncode == 1
    steps = json.loads((tmp_path / "f" / "summary.json").read_text())["steps"]
    assert steps["pretrain"]["phase"] == "Failed" and steps["pretrain"]["error"] == "Error (exit code 1)"
    assert steps["freeze-water"]["phase"] == "Skipped"
