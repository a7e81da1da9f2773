"""Plan -> dflow Workflow: one task per step, keyed by step key, wired by artifacts; renders for Argo."""

from __future__ import annotations

import pytest
import yaml

from lamflow.workflows.api import validate
from lamflow.workflows.compile.dflow_workflow import StepRuntime, build_workflow, staging_requests
from lamflow.workflows.dflow_config import dflow_config
from tests.argo_schema import argo_available, schema_errors, unknown_keys
from tests.conftest import DEMO_DATA, EXAMPLES


def test_staging_requests_bundle_each_steps_datasets():
    _, plan = validate(EXAMPLES / "demo.yaml")
    requests = staging_requests(plan)
    assert requests["datasets:water,water-valid,molecules"] == {
        "water": (DEMO_DATA / "water/train").resolve(),
        "water-valid": (DEMO_DATA / "water/valid").resolve(),
        "molecules": (DEMO_DATA / "molecules/train").resolve(),
    }
    assert set(requests) == {"datasets:water,water-valid,molecules", "datasets:gete", "datasets:gete-test"}


def render_demo_for_argo() -> dict:
    """Build the demo for a cluster (default dflow mode, S3 inputs, an image) and render it; no network."""
    _, plan = validate(EXAMPLES / "demo.yaml")
    with dflow_config({"mode": "default"}, {"access_key": "", "secret_key": ""}):
        from dflow import S3Artifact

        staged = {rid: S3Artifact(key=f"lamflow/inputs/{i}") for i, rid in enumerate(staging_requests(plan))}
        workflow = build_workflow(plan, staged, StepRuntime(image="lamflow-ops:test"))
        return yaml.safe_load(workflow.to_yaml())


def test_dag_tasks_are_the_plan_steps():
    manifest = render_demo_for_argo()
    dag = next(t for t in manifest["spec"]["templates"] if t.get("dag"))
    tasks = {t["name"]: t for t in dag["dag"]["tasks"]}
    _, plan = validate(EXAMPLES / "demo.yaml")
    assert list(tasks) == [s.key for s in plan.steps]
    assert tasks["finetune-gete"]["depends"] == "(pretrain.Succeeded)"
    assert tasks["finetune-gete"]["arguments"]["parameters"][-1] == {
        "name": "dflow_key",
        "value": "finetune-gete",
    }
    pods = [t for t in manifest["spec"]["templates"] if t.get("script")]
    assert {p["script"]["image"] for p in pods} == {"lamflow-ops:test"}
    assert all("from lamflow.ops." in p["script"]["source"] for p in pods), "steps import installed ops"


@pytest.mark.skipif(not argo_available(), reason="../shared/data/argo not present")
@pytest.mark.parametrize("version", ["3.7.18", "4.1.2"])
def test_rendered_manifest_is_schema_valid(version):
    manifest = render_demo_for_argo()
    assert schema_errors(manifest, version) == []
    assert unknown_keys(manifest, version) == []


def test_rendered_manifest_has_no_local_paths_or_default_credentials():
    text = yaml.safe_dump(render_demo_for_argo())
    assert str(DEMO_DATA) not in text
    for secret in ("password", "admin"):
        assert secret not in text
