"""What the concurrent-learning loop (issue 24) will be built on, pinned: dflow runs a recursive Steps
template whose next iteration has a ``when`` on an op's output — in debug mode (the local engine) until the
op says converged, with the iteration in every step key — and renders the same loop as a recursive Argo
template that Argo's schemas accept. dpgen2 builds its loop this way; if a dflow upgrade breaks it,
this test says so before the loop does."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
from dflow import (
    InputArtifact,
    InputParameter,
    Inputs,
    OutputArtifact,
    OutputParameter,
    Outputs,
    ShellOPTemplate,
    Step,
    Steps,
    Workflow,
    config,
    download_artifact,
    if_expression,
    upload_artifact,
)
from dflow.python import OP, OPIO, Artifact, OPIOSign, PythonOPTemplate

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


# --- what the loop carries: artifacts handed from one iteration to the next, and the last one out -----


class Accumulate(OP):
    """One iteration that grows an artifact: a copy of ``data`` with one more line (the labelled frames
    and ensemble checkpoints of the concurrent-learning loop are carried the same way)."""

    @classmethod
    def get_input_sign(cls):
        return OPIOSign({"iteration": int, "limit": int, "data": Artifact(Path)})

    @classmethod
    def get_output_sign(cls):
        return OPIOSign({"iteration": int, "converged": bool, "data": Artifact(Path)})

    @OP.exec_sign_check
    def execute(self, ip: OPIO) -> OPIO:
        iteration = ip["iteration"] + 1
        out = Path("data.txt")
        out.write_text(Path(ip["data"]).read_text() + f"iteration {iteration}\n")
        return OPIO({"iteration": iteration, "converged": iteration >= ip["limit"], "data": out})


def carrying_loop(iterate) -> Steps:
    """A recursive Steps template carrying artifact ``data``; its output ``data`` is the body's when the
    body converged, else the next iteration's (dpgen2's pattern, with dflow's ``if_expression``)."""
    loop = Steps(
        name="carry",
        inputs=Inputs(
            parameters={"iteration": InputParameter(), "limit": InputParameter()},
            artifacts={"data": InputArtifact()},
        ),
        outputs=Outputs(artifacts={"data": OutputArtifact()}),
    )
    body = Step(
        name="accumulate",
        template=iterate(),
        parameters={
            "iteration": loop.inputs.parameters["iteration"],
            "limit": loop.inputs.parameters["limit"],
        },
        artifacts={"data": loop.inputs.artifacts["data"]},
        key="accumulate-i{{inputs.parameters.iteration}}",
    )
    loop.add(body)
    following = Step(
        name="next",
        template=loop,
        parameters={
            "iteration": body.outputs.parameters["iteration"],
            "limit": loop.inputs.parameters["limit"],
        },
        artifacts={"data": body.outputs.artifacts["data"]},
        when=f"{body.outputs.parameters['converged']} == false",
    )
    loop.add(following)
    loop.outputs.artifacts["data"].from_expression = if_expression(
        _if=body.outputs.parameters["converged"] == True,  # noqa: E712 - an Argo expression, not Python
        _then=body.outputs.artifacts["data"],
        _else=following.outputs.artifacts["data"],
    )
    return loop


def test_debug_mode_carries_artifacts_through_iterations_and_hands_out_the_last(
    tmp_path, monkeypatch, dflow_mode
):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("PYTHONPATH", str(REPO))
    dflow_mode("debug")
    seed = tmp_path / "seed.txt"
    seed.write_text("start\n")
    workflow = Workflow(name="carry", steps=Steps(name="main"))
    loop = carrying_loop(lambda: PythonOPTemplate(Accumulate, image="python:3.11", command=[sys.executable]))
    start = Step(
        name="start", template=loop, parameters={"iteration": 0, "limit": 3},
        artifacts={"data": upload_artifact(seed)}, key="carry-start",
    )  # fmt: skip
    workflow.add(start)
    workflow.submit()
    assert workflow.query_status() == "Succeeded"
    keyed = {s.key: s for s in workflow.query_step() if s.key}
    assert sorted(keyed) == ["accumulate-i0", "accumulate-i1", "accumulate-i2", "carry-start"]
    top = keyed["carry-start"]
    out = download_artifact(top.outputs.artifacts["data"], path=tmp_path / "out")
    text = Path(out[0]).read_text() if Path(out[0]).is_file() else (Path(out[0]) / "data.txt").read_text()
    assert (
        text == "start\niteration 1\niteration 2\niteration 3\n"
    )  # every iteration's line, the last one out


def shell_accumulate() -> ShellOPTemplate:
    template = ShellOPTemplate(
        name="accumulate",
        image="alpine:3.20",
        script="i=$(({{inputs.parameters.iteration}}+1)); echo $i > /tmp/iteration; "
        "cp /tmp/in/data /tmp/data; echo iteration $i >> /tmp/data; "
        '[ "$i" -ge {{inputs.parameters.limit}} ] && echo true > /tmp/converged '
        "|| echo false > /tmp/converged",
    )
    template.inputs.parameters = {"iteration": InputParameter(), "limit": InputParameter()}
    template.inputs.artifacts = {"data": InputArtifact(path="/tmp/in/data")}
    template.outputs.parameters = {
        "iteration": OutputParameter(value_from_path="/tmp/iteration"),
        "converged": OutputParameter(value_from_path="/tmp/converged"),
    }
    template.outputs.artifacts = {"data": OutputArtifact(path="/tmp/data")}
    return template


@pytest.mark.parametrize("version", ["3.7.18", "4.1.2"])
def test_the_carrying_loop_renders_with_the_last_iterations_artifact_as_its_output(dflow_mode, version):
    dflow_mode("default")
    seed = ShellOPTemplate(name="seed", image="alpine:3.20", script="echo start > /tmp/data")
    seed.outputs.artifacts = {"data": OutputArtifact(path="/tmp/data")}
    workflow = Workflow(name="carry", steps=Steps(name="main"))
    first = Step(name="seed", template=seed)
    workflow.add(first)
    workflow.add(
        Step(
            name="start", template=carrying_loop(shell_accumulate),
            parameters={"iteration": 0, "limit": 3}, artifacts={"data": first.outputs.artifacts["data"]},
        )
    )  # fmt: skip
    manifest = workflow.to_dict()
    templates = {t["name"]: t for t in manifest["spec"]["templates"]}
    (loop_name,) = [n for n, t in templates.items() if n.startswith("carry") and "steps" in t]
    (output,) = templates[loop_name]["outputs"]["artifacts"]
    assert "fromExpression" in output and "converged" in output["fromExpression"]
    assert "steps['next'].outputs.artifacts['data']" in output["fromExpression"]
    assert schema_errors(manifest, version) == [] and unknown_keys(manifest, version) == []
