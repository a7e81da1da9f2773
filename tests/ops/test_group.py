"""The in-pod step-group runner (ops/group.py) on the demo's `after-pretrain` group, exactly as the Argo
renderer describes it, with the fake dp: every step's outputs, metrics and phase; one failing step fails
alone (and what needs it)."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest

from lamflow.ops import dp
from lamflow.ops.group import run_group
from lamflow.ops.pretrain import PretrainOP
from lamflow.ops.runtime.files import bundle_catalog, catalog_output, resolve_output
from lamflow.workflows import api
from lamflow.workflows.argo.render import RenderOptions, input_parameter
from lamflow.workflows.compile.dflow_workflow import staging_requests
from lamflow.workflows.settings import Settings
from tests.conftest import EXAMPLES
from tests.ops.conftest import STAGED


@pytest.fixture
def pod(tmp_path, run_op, monkeypatch):
    """The after-pretrain group's `steps` and a pod root holding its input artifacts as Argo places them."""
    monkeypatch.setattr(dp, "IN_WORKER", dp.IN_WORKER)  # run_group sets it; put it back after the test
    _, plan = api.validate(EXAMPLES / "demo.yaml")
    checkpoint = run_op(PretrainOP, plan.step("pretrain").params, datasets=STAGED).checkpoint
    manifest = api.render(EXAMPLES / "demo.yaml", Settings(image="i", group=True), RenderOptions())
    (task,) = [t for t in manifest["spec"]["templates"][0]["dag"]["tasks"] if t["name"] == "after-pretrain"]
    bundles = {input_parameter(rid): request for rid, request in staging_requests(plan).items()}
    root = tmp_path / "pod"
    for argument in task["arguments"]["artifacts"]:
        folder = root / "inputs" / "artifacts" / argument["name"]
        if "from" in argument:  # the pretrain step's checkpoint, as dflow stores an output
            assert argument["from"] == "{{tasks.pretrain.outputs.artifacts.checkpoint}}"
            catalog_output(checkpoint.resolve(), folder)
            continue
        parameter = argument["s3"]["key"].removeprefix("{{workflow.parameters.").removesuffix("}}")
        for name, path in bundles[parameter].items():  # a staged bundle: <name>/ folders + dflow's catalog
            shutil.copytree(path, folder / name)
        (folder / ".dflow").mkdir()
        (folder / ".dflow" / "lamflow-inputs").write_text(bundle_catalog(sorted(bundles[parameter])))
    return json.loads(task["arguments"]["parameters"][0]["value"]), root


def test_a_group_runs_its_steps_in_one_process_each_with_its_own_outputs(pod, fake_dp):
    steps, root = pod
    assert run_group(steps, root) == 0
    phases = json.loads((root / "outputs" / "parameters" / "phases").read_text())
    assert phases == {s["key"]: {"phase": "Succeeded"} for s in steps}
    model = resolve_output(root / "outputs" / "artifacts" / "freeze-water--model")
    assert model.name == "model.pth" and model.is_file()
    tests = [s["key"] for s in steps if s["op"].endswith(":TestOP")]
    for key in tests:
        metrics = json.loads((root / "outputs" / "parameters" / f"{key}--metrics").read_text())
        assert metrics["force_rmse"] > 0
    in_pod = [r for r in fake_dp.records() if str(root / "group") in r["cwd"]]
    assert len(in_pod) == len(steps) and {Path(r["cwd"]).parent.name for r in in_pod} == {
        s["key"] for s in steps
    }
    assert {r["pid"] for r in in_pod} == {os.getpid()}, "dp ran in-process: one process for the whole group"


def test_a_failing_step_fails_alone_and_the_group_exits_1(pod, fake_dp, monkeypatch):
    steps, root = pod
    monkeypatch.setenv("LAMFLOW_FAKE_DP_FAIL", "change-bias")
    assert run_group(steps, root) == 1
    phases = json.loads((root / "outputs" / "parameters" / "phases").read_text())
    failed = [k for k, p in phases.items() if p["phase"] == "Failed"]
    skipped = [k for k, p in phases.items() if p["phase"] == "Skipped"]
    assert failed == [s["key"] for s in steps if s["op"].endswith(":ChangeBiasOP")]
    assert all("change-bias failed" in phases[k]["error"] for k in failed)
    assert skipped and all("which did not succeed" in phases[k]["error"] for k in skipped)
    assert phases["freeze-water"] == {"phase": "Succeeded"} and phases["freeze-molecules"] == {
        "phase": "Succeeded"
    }
