"""What the concurrent-learning loop (issue 24) will be built on, pinned: dflow runs a recursive Steps
template whose next iteration has a ``when`` on an op's output — in debug mode (the local engine) until the
op says converged, with the iteration in every step key — and renders the same loop as a recursive Argo
template that Argo's schemas accept. dpgen2 builds its loop this way; if a dflow upgrade breaks it,
this test says so before the loop does."""

from __future__ import annotations

import sys

import pytest
from dflow import InputParameter, Inputs, OutputParameter, ShellOPTemplate, Step, Steps, Workflow, config
from dflow.python import OP, OPIO, OPIOSign, PythonOPTemplate

from tests.argo_schema import schema_errors, unknown_keys
from tests.conftest import REPO


class Iterate(OP):
    """One iteration: counts up and says converged at the limit."""

    @classmethod
    def get_input_sign(cls):
        return OPIOSign({"iteration": int, "limit": int})

    @classmethod
    def get_output_sign(cls):
        return OPIOSign({"iteration": int, "converged": bool})

    @OP.exec_sign_check
    def execute(self, ip: OPIO) -> OPIO:
        iteration = ip["iteration"] + 1
        return OPIO({"iteration": iteration, "converged": iteration >= ip["limit"]})


def python_iterate() -> PythonOPTemplate:
    return PythonOPTemplate(Iterate, image="python:3.11", command=[sys.executable])


def shell_iterate() -> ShellOPTemplate:
    """The same iteration as a shell template (rendering a PythonOPTemplate would upload packages to S3)."""
    template = ShellOPTemplate(
        name="iterate",
        image="alpine:3.20",
        script="i=$(({{inputs.parameters.iteration}}+1)); echo $i > /tmp/iteration; "
        '[ "$i" -ge {{inputs.parameters.limit}} ] && echo true > /tmp/converged '
        "|| echo false > /tmp/converged",
    )
    template.inputs.parameters = {"iteration": InputParameter(), "limit": InputParameter()}
    template.outputs.parameters = {
        "iteration": OutputParameter(value_from_path="/tmp/iteration"),
        "converged": OutputParameter(value_from_path="/tmp/converged"),
    }
    return template


def loop_workflow(limit: int, iterate=python_iterate) -> Workflow:
    loop = Steps(
        name="loop", inputs=Inputs(parameters={"iteration": InputParameter(), "limit": InputParameter()})
    )
    body = Step(
        name="iterate",
        template=iterate(),
        parameters={
            "iteration": loop.inputs.parameters["iteration"],
            "limit": loop.inputs.parameters["limit"],
        },
        key="iterate-i{{inputs.parameters.iteration}}",
    )
    loop.add(body)
    loop.add(
        Step(
            name="next",
            template=loop,
            parameters={
                "iteration": body.outputs.parameters["iteration"],
                "limit": loop.inputs.parameters["limit"],
            },
            when=f"{body.outputs.parameters['converged']} == false",
        )
    )
    workflow = Workflow(name="loop", steps=Steps(name="main"))
    workflow.add(Step(name="start", template=loop, parameters={"iteration": 0, "limit": limit}))
    return workflow


@pytest.fixture
def dflow_mode():
    saved = config["mode"]
    yield lambda mode: config.__setitem__("mode", mode)
    config["mode"] = saved


def test_debug_mode_iterates_until_an_op_says_converged(tmp_path, monkeypatch, dflow_mode):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("PYTHONPATH", str(REPO))  # the step script imports this module
    dflow_mode("debug")
    workflow = loop_workflow(limit=3)
    workflow.submit()
    assert workflow.query_status() == "Succeeded"
    keyed = {s.key: s.outputs.parameters for s in workflow.query_step() if s.key}
    assert sorted(keyed) == ["iterate-i0", "iterate-i1", "iterate-i2"]  # decided at run time: 3 iterations
    assert keyed["iterate-i2"]["converged"].value is True
    assert keyed["iterate-i1"]["converged"].value is False


@pytest.mark.parametrize("version", ["3.7.18", "4.1.2"])
def test_the_same_loop_renders_as_a_recursive_argo_template(dflow_mode, version):
    dflow_mode("default")
    manifest = loop_workflow(limit=3, iterate=shell_iterate).to_dict()
    templates = {t["name"]: t for t in manifest["spec"]["templates"]}
    (loop_name,) = [n for n, t in templates.items() if n.startswith("loop") and "steps" in t]
    calls = [step for group in templates[loop_name]["steps"] for step in group]
    recursive = [s for s in calls if s["template"] == loop_name]
    assert len(recursive) == 1 and "converged" in recursive[0]["when"]
    assert schema_errors(manifest, version) == [] and unknown_keys(manifest, version) == []
