"""render(plan) -> Argo Workflow / WorkflowTemplate / CronWorkflow: schema-valid, stable, resources per step
class, workflow parameters, no credentials. Built without network."""

from __future__ import annotations

import functools
import json
from pathlib import Path

import pytest
import yaml

from lamflow.workflows import api
from lamflow.workflows.argo.render import RenderOptions, version, workflow_parameter
from lamflow.workflows.errors import UsageError
from lamflow.workflows.settings import Settings
from tests.argo_schema import argo_available, schema_errors, unknown_keys
from tests.conftest import DEMO_DATA, EXAMPLES, minimal_spec, run_cli

KINDS = {
    "workflow": "io.argoproj.workflow.v1alpha1.Workflow",
    "workflowtemplate": "io.argoproj.workflow.v1alpha1.WorkflowTemplate",
    "cronworkflow": "io.argoproj.workflow.v1alpha1.CronWorkflow",
}
SPECS = sorted(EXAMPLES.glob("*.yaml"))


def settings(**changes) -> Settings:
    base = {"image": "lamflow-ops:test", "store_prefix": "lab", "cluster_profile": "gpu", "group": False}
    return Settings(**{**base, **changes})


def render(spec=EXAMPLES / "demo.yaml", kind="workflow", schedule=None, **changes) -> dict:
    return api.render(spec, settings(**changes), RenderOptions(kind=kind, schedule=schedule))


@functools.cache
def _rendered(spec: Path, kind: str, group: bool) -> dict:
    """One document per example, kind and grouping, checked against each Argo version's schema (read only)."""
    return render(spec, kind, "0 3 * * 1" if kind == "cronworkflow" else None, group=group)


def templates(manifest: dict) -> dict[str, dict]:
    spec = manifest["spec"].get("workflowSpec", manifest["spec"])
    return {t["name"]: t for t in spec["templates"]}


def dag_tasks(manifest: dict) -> dict[str, dict]:
    dag = next(t for t in templates(manifest).values() if t.get("dag"))
    return {t["name"]: t for t in dag["dag"]["tasks"]}


@pytest.mark.skipif(not argo_available(), reason="../shared/data/argo not present")
@pytest.mark.parametrize("version", ["3.7.18", "4.1.2"])
@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("group", [True, False], ids=["grouped", "ungrouped"])
@pytest.mark.parametrize("spec", SPECS, ids=lambda p: p.name)
def test_every_example_renders_schema_valid_documents_of_every_kind(spec, group, kind, version):
    manifest = _rendered(spec, kind, group)
    assert manifest["kind"] == KINDS[kind].rsplit(".", 1)[1]
    assert schema_errors(manifest, version, KINDS[kind]) == []
    assert unknown_keys(manifest, version, KINDS[kind]) == []


def test_schema_check_catches_what_it_should():
    """The validator the tests rely on refuses a wrong type and reports an unknown key."""
    manifest = render()
    broken = json.loads(json.dumps(manifest))
    broken["spec"]["templates"][1]["script"]["imagee"] = "typo"
    broken["spec"]["podGC"] = "never"
    assert unknown_keys(broken, "4.1.2") == ["/spec/templates[1]/script/imagee"]
    assert any(e.startswith("spec/podGC") for e in schema_errors(broken, "4.1.2"))


def test_dag_tasks_are_the_plan_steps_and_templates_have_stable_names():
    manifest = render()
    tasks = dag_tasks(manifest)
    _, plan = api.validate(EXAMPLES / "demo.yaml")
    assert list(tasks) == [s.key for s in plan.steps]
    assert tasks["finetune-gete"]["depends"] == "(pretrain.Succeeded)"
    assert set(templates(manifest)) == {"demo-dag", "pretrain", "freeze", "finetune", "change-bias", "test"}
    assert {t["template"] for t in tasks.values()} == set(templates(manifest)) - {"demo-dag"}
    pods = [t for t in templates(manifest).values() if t.get("script")]
    assert {p["script"]["image"] for p in pods} == {"lamflow-ops:test"}
    assert all("from lamflow.ops." in p["script"]["source"] for p in pods), "steps import installed ops"
    assert render() == manifest


def test_labels_and_annotations_name_the_spec_and_lamflow_version():
    manifest = render()
    labels, annotations = manifest["metadata"]["labels"], manifest["metadata"]["annotations"]
    digest = annotations["lamflow.io/spec-sha256"]
    assert len(digest) == 64 and labels["lamflow.io/spec-sha256"] == digest[:16]
    assert labels["lamflow.io/spec"] == "demo" and annotations["lamflow.io/version"] == version()
    assert annotations["workflows.argoproj.io/title"] == "demo"
    assert manifest["metadata"]["generateName"] == "demo-"
    assert all(
        t["metadata"]["labels"]["lamflow.io/op"] == n for n, t in templates(manifest).items() if "script" in t
    )
    template = render(kind="workflowtemplate")
    assert template["metadata"]["name"] == "demo" and template["spec"]["workflowMetadata"]["labels"] == labels


def test_step_counts_inputs_and_spec_digest_are_workflow_parameters():
    """What a user may change from the Argo UI before a run: the parameter defaults reproduce the spec."""
    manifest = render(kind="workflowtemplate")
    parameters = {p["name"]: p["value"] for p in manifest["spec"]["arguments"]["parameters"]}
    assert parameters["pretrain-steps"] == "200" and parameters["finetune-gete-steps"] == "1200"
    assert parameters["input-datasets-gete"] == "lab/inputs/datasets-gete"
    assert len(parameters["spec-sha256"]) == 64
    tasks = dag_tasks(manifest)
    (datasets,) = [a for a in tasks["finetune-gete"]["arguments"]["artifacts"] if a["name"] == "datasets"]
    assert datasets["s3"] == {"key": "{{workflow.parameters.input-datasets-gete}}"}
    _, plan = api.validate(EXAMPLES / "demo.yaml")
    for key in ("pretrain", "finetune-gete"):
        (value,) = [p["value"] for p in tasks[key]["arguments"]["parameters"] if p["name"] == "deepmd_input"]
        assert workflow_parameter(f"{key}-steps") in value
        substituted = value.replace(workflow_parameter(f"{key}-steps"), parameters[f"{key}-steps"])
        assert json.loads(substituted) == plan.step(key).parameters["deepmd_input"]


def test_gpu_profile_defaults_and_spec_resources():
    demo = templates(render())
    assert demo["pretrain"]["script"]["resources"] == {
        "requests": {"cpu": "8", "memory": "32Gi", "nvidia.com/gpu": "1"},
        "limits": {"memory": "32Gi", "nvidia.com/gpu": "1"},
    }
    assert demo["pretrain"]["retryStrategy"] == {
        "limit": "3",
        "retryPolicy": "OnError",  # a lost pod, never a step that failed on its input
        "backoff": {"duration": "1m", "factor": "2", "maxDuration": "1h"},
    }
    gpu = templates(render(EXAMPLES / "argo-gpu.yaml"))
    pretrain = gpu["pretrain"]
    assert pretrain["script"]["resources"]["requests"] == {
        "cpu": "32",
        "memory": "128Gi",
        "nvidia.com/gpu": "4",
    }
    assert {"name": "LAMFLOW_NPROC_PER_NODE", "value": "4"} in pretrain["script"]["env"]
    assert pretrain["nodeSelector"] == {"lamflow.io/pool": "gpu"}
    assert pretrain["tolerations"] == [
        {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}
    ]
    assert pretrain["priorityClassName"] == "lamflow-training"
    assert pretrain["activeDeadlineSeconds"] == "172800" and pretrain["retryStrategy"]["limit"] == "5"
    assert "LAMFLOW_NPROC_PER_NODE" not in json.dumps(gpu["finetune"])  # one GPU: no torchrun
    assert gpu["test"]["script"]["resources"]["limits"] == {"memory": "24Gi", "nvidia.com/gpu": "1"}


def test_cpu_profile_asks_for_no_gpu_and_refuses_a_spec_that_does():
    cpu = templates(render(cluster_profile="cpu", image=None))
    assert "nvidia.com/gpu" not in json.dumps(cpu)
    assert cpu["pretrain"]["script"]["image"] == f"lamflow-ops:{version()}-cpu"
    with pytest.raises(UsageError, match=r"^resources.pretrain.gpus: 4 GPU\(s\) asked for, but the cluster"):
        render(EXAMPLES / "argo-gpu.yaml", cluster_profile="cpu")


def test_cron_workflow_schedule_timezone_and_policy():
    manifest = api.render(
        EXAMPLES / "demo.yaml",
        settings(),
        RenderOptions(kind="cronworkflow", schedule="30  2 * * 1-5", timezone="Asia/Shanghai"),
    )
    spec = manifest["spec"]
    assert spec["schedules"] == ["30 2 * * 1-5"] and spec["timezone"] == "Asia/Shanghai"
    assert spec["concurrencyPolicy"] == "Forbid"
    assert spec["workflowSpec"]["entrypoint"] == "demo-dag"
    for schedule in ("@daily", "@every 6h", "0 0 1 */3 *"):
        render(kind="cronworkflow", schedule=schedule)


@pytest.mark.parametrize(
    ("kind", "schedule", "timezone", "message"),
    [
        ("cronworkflow", None, "UTC", "--schedule: required with --kind cronworkflow"),
        ("cronworkflow", "0 3 * *", "UTC", "--schedule '0 3 * *': not a cron schedule"),
        ("cronworkflow", "61 * * * *", "UTC", "--schedule '61 * * * *': not a cron schedule"),
        ("cronworkflow", "@sometimes", "UTC", "--schedule '@sometimes': not a cron schedule"),
        ("cronworkflow", "@daily", "Mars/Olympus", "--timezone 'Mars/Olympus': not an IANA time zone"),
        ("workflow", "@daily", "UTC", "--schedule: only for --kind cronworkflow"),
        ("deployment", None, "UTC", "--kind deployment: expected one of"),
    ],
)
def test_bad_render_options_are_refused_naming_the_option(kind, schedule, timezone, message):
    with pytest.raises(UsageError) as refused:
        api.render(EXAMPLES / "demo.yaml", settings(), RenderOptions(kind, schedule, timezone))
    assert str(refused.value).startswith(message)


def test_no_credentials_or_local_paths_in_any_document(monkeypatch):
    """Credentials set everywhere a careless renderer could pick them up: the AWS chain, the Argo token,
    and dflow's own global S3 config (which dflow serialises into every PythonOP script)."""
    import dflow

    secrets = {
        "AWS_ACCESS_KEY_ID": "AKIAEXAMPLEKEY123456",
        "AWS_SECRET_ACCESS_KEY": "wJalrXUtnFEMIexampleSECRETkey0000000000",
        "AWS_SESSION_TOKEN": "sessionTOKENexample987",
        "LAMFLOW_ARGO_TOKEN": "argoBEARERtokenEXAMPLE555",
    }
    for name, value in secrets.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setitem(dflow.s3_config, "access_key", "dflowACCESSexample")
    monkeypatch.setitem(dflow.s3_config, "secret_key", "dflowSECRETexample")
    monkeypatch.setitem(dflow.config, "token", "dflowTOKENexample")
    for spec in SPECS:
        for kind in KINDS:
            manifest = api.render(
                spec,
                Settings(image="img:1"),
                RenderOptions(kind, "@daily" if kind == "cronworkflow" else None),
            )
            text = yaml.safe_dump(manifest)
            for value in [*secrets.values(), "dflowACCESSexample", "dflowSECRETexample", "dflowTOKENexample"]:
                assert value not in text, f"{spec.name} {kind}: a credential leaked"
            assert "s3_config" not in text and "jsonpickle.loads" not in text, "dflow's config was serialised"
            assert str(DEMO_DATA) not in text and str(EXAMPLES) not in text, "a local path leaked"


def test_render_cli_writes_documents_and_refuses_bad_options_in_one_line(tmp_path, write_spec):
    out = tmp_path / "manifests"
    ok = run_cli("render", str(EXAMPLES / "demo.yaml"), "--kind", "workflowtemplate", "-o", str(out))
    assert ok.returncode == 0, ok.stderr
    written = yaml.safe_load((out / "demo.workflowtemplate.yaml").read_text())
    assert written["kind"] == "WorkflowTemplate"
    assert "group-after-pretrain" in {t["name"] for t in written["spec"]["templates"]}
    ungrouped = yaml.safe_load(run_cli("render", str(EXAMPLES / "demo.yaml"), "--no-group").stdout)
    assert "group-after-pretrain" not in {t["name"] for t in ungrouped["spec"]["templates"]}
    bad = run_cli("render", str(EXAMPLES / "demo.yaml"), "--kind", "cronworkflow", "--schedule", "every day")
    assert bad.returncode == 2 and bad.stdout == ""
    assert bad.stderr.strip().count("\n") == 0 and "--schedule 'every day': not a cron schedule" in bad.stderr
    spec = write_spec({**minimal_spec(), "resources": {"pretrain": {"gpus": 2}}})
    cpu = run_cli("render", str(spec), env={**__import__("os").environ, "LAMFLOW_CLUSTER_PROFILE": "cpu"})
    assert cpu.returncode == 2 and "resources.pretrain.gpus: 2 GPU(s) asked for" in cpu.stderr
    assert "Traceback" not in cpu.stderr


@pytest.mark.parametrize("spec", SPECS, ids=lambda p: p.name)
def test_dag_tasks_are_what_dflow_writes_for_the_same_plan(spec):
    """The renderer writes the DAG itself (dflow deep-copies every template into every task: seconds for a
    1,000-task fan-out); the tasks must equal dflow's own, less the fields that repeat the template
    (parameter type descriptions, artifact paths, `optional: false`, empty hooks)."""
    from lamflow.workflows.argo.render import _step_templates, dag_tasks, input_parameter
    from lamflow.workflows.compile.dflow_workflow import StepRuntime, build_workflow, staging_requests
    from lamflow.workflows.compile.loops import unroll
    from lamflow.workflows.dflow_config import dflow_config

    _, plan = api.validate(spec)
    plan = unroll(plan)  # a loop: its first iteration's steps, as plain tasks (argo/loops.py nests them)
    inputs = {rid: input_parameter(rid) for rid in staging_requests(plan)}
    with dflow_config({"mode": "default"}, {"access_key": "", "secret_key": ""}):
        from dflow import S3Artifact

        staged = {rid: S3Artifact(key=workflow_parameter(name)) for rid, name in inputs.items()}
        document = build_workflow(plan, staged, StepRuntime(image="x")).to_dict()
    dag = next(t for t in document["spec"]["templates"] if t.get("dag"))

    def normal(task: dict) -> dict:
        arguments = task.get("arguments", {})
        params = sorted(
            ({k: p[k] for k in ("name", "value")} for p in arguments.get("parameters", [])),
            key=lambda p: p["name"],
        )
        artifacts = sorted(
            (
                {k: v for k, v in a.items() if k not in ("optional", "path")}
                for a in arguments.get("artifacts", [])
            ),
            key=lambda p: p["name"],
        )
        return {
            "name": task["name"],
            "template": task["template"],
            # "(a.Succeeded) && (b.Succeeded)": the order of the terms means nothing
            "depends": sorted(task["depends"].split(" && ")) if task.get("depends") else None,
            "parameters": params,
            "artifacts": artifacts,
        }

    of_step, _ = _step_templates(plan, "x")
    ours = [normal(t) for t in dag_tasks(plan, of_step, inputs)]
    assert ours == [normal(t) for t in dag["dag"]["tasks"]]


def test_root_node_outputs_show_every_tests_metrics_and_every_model_in_the_ui():
    dag = next(t for t in templates(render()).values() if t.get("dag"))
    parameters = {p["name"]: p for p in dag["outputs"]["parameters"]}
    _, plan = api.validate(EXAMPLES / "demo.yaml")
    assert set(parameters) == {f"metrics-{s.key}" for s in plan.evaluations}
    finetuned = parameters["metrics-test-finetune-gete-on-gete-test"]
    assert finetuned["description"] == "finetune.gete on gete-test"
    assert finetuned["valueFrom"] == {
        "parameter": "{{tasks.test-finetune-gete-on-gete-test.outputs.parameters.metrics}}",
        "default": "{}",  # a failed test leaves "{}", not an unresolvable output that hides the failure
    }
    zero_shot = parameters["metrics-test-pretrain-water-on-gete-test-change-bias-gete"]["description"]
    assert zero_shot == "pretrain.water on gete-test (energy bias re-fitted on gete)"
    artifacts = {a["name"]: a["from"] for a in dag["outputs"]["artifacts"]}
    assert artifacts["pretrain-water-pth"] == "{{tasks.freeze-water.outputs.artifacts.model}}"
    assert artifacts["finetune-gete-pt"] == "{{tasks.finetune-gete.outputs.artifacts.checkpoint}}"
    assert all(a["optional"] for a in dag["outputs"]["artifacts"])


def test_training_pods_carry_checkpoints_through_the_store_with_keys_from_the_cluster_secret():
    pods = templates(render(store="s3://lamflow/lab", argo_s3_endpoint="http://minio.argo.svc:9000"))
    env = {e["name"]: e for e in pods["pretrain"]["script"]["env"]}
    assert env["LAMFLOW_CHECKPOINT_URI"]["value"] == (
        "s3://lamflow/lab/checkpoints/{{workflow.uid}}/{{inputs.parameters.dflow_key}}"
    )
    assert env["AWS_ACCESS_KEY_ID"]["valueFrom"] == {
        "secretKeyRef": {"name": "lamflow-s3", "key": "accessKey"}
    }
    assert env["AWS_SECRET_ACCESS_KEY"]["valueFrom"] == {
        "secretKeyRef": {"name": "lamflow-s3", "key": "secretKey"}
    }
    assert env["AWS_ENDPOINT_URL"]["value"] == "http://minio.argo.svc:9000"
    assert "LAMFLOW_CHECKPOINT_URI" in json.dumps(pods["finetune"])
    assert "LAMFLOW_CHECKPOINT_URI" not in json.dumps(pods["test"]) and "AWS_" not in json.dumps(pods["test"])
    local = templates(render(store="/data/store"))
    assert "LAMFLOW_CHECKPOINT_URI" not in json.dumps(local), (
        "no s3:// store: nothing to carry checkpoints in"
    )


def test_a_step_group_is_one_pod_whose_steps_keep_their_own_outputs():
    """`after-pretrain` (freezes, change-bias, zero-shot tests) and `after-finetune-gete` (its test) are one
    task each; the group's outputs are named by step; what other tasks and the UI read is rewritten."""
    manifest = render(group=True)
    tasks = dag_tasks(manifest)
    _, plan = api.validate(EXAMPLES / "demo.yaml")
    assert list(tasks) == ["pretrain", "after-pretrain", "finetune-gete", "after-finetune-gete"]
    assert tasks["after-pretrain"]["depends"] == "(pretrain.Succeeded)"
    assert tasks["after-finetune-gete"]["depends"] == "(finetune-gete.Succeeded)"
    steps = json.loads(tasks["after-pretrain"]["arguments"]["parameters"][0]["value"])
    assert [s["key"] for s in steps] == list(plan.groups["after-pretrain"])
    freeze = steps[0]
    assert freeze["op"] == "lamflow.ops.freeze:FreezeOP" and freeze["artifacts"] == {
        "checkpoint": {"input": "in-0"}
    }
    change_bias, zero_shot = steps[2], steps[3]
    assert change_bias["artifacts"]["model"] == {"step": "freeze-water", "output": "model"}
    assert zero_shot["artifacts"]["model"] == {"step": change_bias["key"], "output": "model"}
    assert freeze["params"] == plan.step("freeze-water").parameters
    inputs = {a["name"]: a for a in tasks["after-pretrain"]["arguments"]["artifacts"]}
    assert inputs["in-0"]["from"] == "{{tasks.pretrain.outputs.artifacts.checkpoint}}"
    group = templates(manifest)["group-after-pretrain"]
    outputs = {a["name"] for a in group["outputs"]["artifacts"]}
    assert {"freeze-water--model", "freeze-water--log", f"{zero_shot['key']}--detail"} <= outputs
    parameters = {p["name"] for p in group["outputs"]["parameters"]}
    assert {"phases", f"{zero_shot['key']}--metrics"} <= parameters
    assert group["script"]["source"].startswith("from lamflow.ops.group import main")
    assert group["metadata"]["labels"]["lamflow.io/op"] == "group" and "retryStrategy" in group
    assert set(templates(manifest)) == {
        "demo-dag", "pretrain", "finetune", "group-after-pretrain", "group-after-finetune-gete"
    }  # fmt: skip
    dag = templates(manifest)["demo-dag"]
    metrics = {p["name"]: p["valueFrom"]["parameter"] for p in dag["outputs"]["parameters"]}
    assert metrics["metrics-test-finetune-gete-on-gete-test"] == (
        "{{tasks.after-finetune-gete.outputs.parameters.test-finetune-gete-on-gete-test--metrics}}"
    )
    models = {a["name"]: a["from"] for a in dag["outputs"]["artifacts"]}
    assert models["pretrain-water-pth"] == "{{tasks.after-pretrain.outputs.artifacts.freeze-water--model}}"
    assert models["finetune-gete-pth"] == "{{tasks.finetune-gete.outputs.artifacts.model}}"


def test_large_groups_run_as_parallel_pods_and_large_test_sets_stay_out_of_the_root_outputs(monkeypatch):
    """A 1,000-test fan-out gains more from parallel pods than from saved start-ups, and listing every
    test on the root node would swell the manifest (bench/render_fanout.py)."""
    from lamflow.workflows.argo import groups
    from lamflow.workflows.argo import render as render_module

    monkeypatch.setattr(groups, "MAX_POD_STEPS", 2)  # after-pretrain has 6 steps, after-finetune-gete 1
    tasks = dag_tasks(render(group=True))
    assert "after-pretrain" not in tasks and "freeze-water" in tasks and "after-finetune-gete" in tasks
    monkeypatch.setattr(render_module, "MAX_UI_METRICS", 2)  # the demo has 3 tests
    dag = next(t for t in templates(render(group=True)).values() if t.get("dag"))
    assert dag["outputs"]["parameters"] == [] and dag["outputs"]["artifacts"]
