"""A loop decided at run time rendered for Argo (workflows/argo/loops.py): one recursive DAG template per
loop whose ``next`` task calls it again ``when`` the decision step did not say stop, with the iteration
in every step's ``dflow_key``, what it carries handed on, its outputs taken from the iteration that
stopped, valid for both Argo schemas; and the Argo engine names a loop's pods by their ``dflow_key``."""

from __future__ import annotations

import pytest
import yaml

from lamflow.workflows import api
from lamflow.workflows.argo.render import RenderOptions
from lamflow.workflows.engines.argo import _step_key
from tests.argo_schema import argo_available, schema_errors, unknown_keys
from tests.workflows.active_spec import active_spec
from tests.workflows.argo.test_render import KINDS, settings, templates


def rendered(write_spec, group: bool, kind: str = "workflow") -> dict:
    file = write_spec(yaml.safe_dump(active_spec()))
    schedule = "0 3 * * 1" if kind == "cronworkflow" else None
    return api.render(file, settings(group=group), RenderOptions(kind=kind, schedule=schedule))


@pytest.mark.skipif(not argo_available(), reason="../shared/data/argo not present")
@pytest.mark.parametrize("version", ["3.7.18", "4.1.2"])
@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("group", [True, False], ids=["grouped", "ungrouped"])
def test_the_loop_renders_schema_valid_with_every_template_it_calls(write_spec, group, kind, version):
    manifest = rendered(write_spec, group, kind)
    assert schema_errors(manifest, version, KINDS[kind]) == []
    assert unknown_keys(manifest, version, KINDS[kind]) == []
    found = templates(manifest)
    called = {task["template"] for t in found.values() if "dag" in t for task in t["dag"]["tasks"]}
    assert called <= set(found)


@pytest.mark.parametrize("group", [True, False], ids=["grouped", "ungrouped"])
def test_the_loop_is_a_recursive_template_conditioned_on_the_decision(write_spec, group):
    found = templates(rendered(write_spec, group))
    loop = found["active-w"]
    tasks = {t["name"]: t for t in loop["dag"]["tasks"]}
    following = tasks["next"]
    assert following["template"] == "active-w"  # itself: the number of iterations is decided at run time
    assert following["when"] == "{{tasks.converge.outputs.parameters.stop}} == false"
    arguments = {p["name"]: p["value"] for p in following["arguments"]["parameters"]}
    assert arguments == {
        "iteration": "{{tasks.converge.outputs.parameters.next_iteration}}",
        "tag": "{{tasks.converge.outputs.parameters.next_tag}}",
    }
    carried = {a["name"]: a["from"] for a in following["arguments"]["artifacts"]}
    assert carried["labelled"] == "{{tasks.merge.outputs.artifacts.labelled}}"
    assert carried["in-pretrain--checkpoint"] == "{{inputs.artifacts.in-pretrain--checkpoint}}"
    train = {p["name"]: p["value"] for p in tasks["train-1"]["arguments"]["parameters"]}
    assert train["dflow_key"] == "active-w-{{inputs.parameters.tag}}-train-1"
    explore = {p["name"]: p["value"] for p in tasks["explore-s0-300k"]["arguments"]["parameters"]}
    assert explore["iteration"] == "{{inputs.parameters.iteration}}"
    inputs = {a["name"]: a for a in loop["inputs"]["artifacts"]}
    assert inputs["labelled"].get("optional") is True  # iteration 1 has nothing labelled yet
    outputs = {a["name"]: a["fromExpression"] for a in loop["outputs"]["artifacts"]}
    assert outputs["model"] == (
        "tasks['converge'].outputs.parameters['stop'] == 'true' ? "
        "tasks['train-1'].outputs.artifacts['model'] : tasks['next'].outputs.artifacts['model']"
    )
    main = next(t for name, t in found.items() if name.endswith("-dag"))
    starts = {t["name"]: t for t in main["dag"]["tasks"]}["active-w"]
    assert {p["name"]: p["value"] for p in starts["arguments"]["parameters"]} == {
        "iteration": "1",
        "tag": "i001",
    }
    assert starts["depends"] == "(pretrain.Succeeded)"
    model = {a["name"]: a["from"] for a in main["outputs"]["artifacts"]}["active-w-pth"]
    assert model == "{{tasks.active-w.outputs.artifacts.model}}"


def test_a_loops_pod_is_named_by_its_iterations_key():
    node = {
        "displayName": "train-1",
        "inputs": {"parameters": [{"name": "deepmd_input", "value": "{}"},
                                  {"name": "dflow_key", "value": "active-w-i003-train-1"}]},
    }  # fmt: skip
    assert _step_key(node) == "active-w-i003-train-1"
    assert _step_key({"displayName": "pretrain"}) == "pretrain"


@pytest.mark.skipif(not argo_available(), reason="../shared/data/argo not present")
@pytest.mark.parametrize("version", ["3.7.18", "4.1.2"])
def test_label_steps_fan_out_carry_checkpoints_and_run_in_the_labelers_image(write_spec, version):
    """label.parallel: 2 label tasks per iteration in the labeler's image (every other step in the steps'
    image); init_from_previous: each member's checkpoint handed to the next iteration; schema-valid."""
    spec = active_spec(init_from_previous=True)
    entry = spec["stages"]["active"][0]
    entry["label"]["parallel"] = 2
    entry["label"]["command"]["image"] = "registry.example.org/lab/vasp-lamflow:6.4.3"
    manifest = api.render(write_spec(yaml.safe_dump(spec)), settings(group=True), RenderOptions())
    assert schema_errors(manifest, version, KINDS["workflow"]) == []
    found = templates(manifest)
    loop = {t["name"]: t for t in found["active-w"]["dag"]["tasks"]}
    labels = [loop["label-1"], loop["label-2"]]
    assert {t["template"] for t in labels} == {"label-dft"}
    assert found["label-dft"]["script"]["image"] == "registry.example.org/lab/vasp-lamflow:6.4.3"
    others = {t["script"]["image"] for name, t in found.items() if "script" in t and name != "label-dft"}
    assert len(others) == 1 and next(iter(others)).startswith("lamflow-ops:")
    merge = {a["name"]: a["from"] for a in loop["merge"]["arguments"]["artifacts"]}
    assert merge["labels2"] == "{{tasks.label-2.outputs.artifacts.labels}}"
    carried = {a["name"]: a["from"] for a in loop["next"]["arguments"]["artifacts"]}
    assert carried["train-1-checkpoint"] == "{{tasks.train-1.outputs.artifacts.checkpoint}}"
