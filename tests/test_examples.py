"""Every example spec in the repository validates and compiles (plan + dflow workflow)."""

from __future__ import annotations

import pytest

from lamflow.workflows.api import validate
from lamflow.workflows.compile.dflow_workflow import StepRuntime, build_workflow, staging_requests
from lamflow.workflows.dflow_config import dflow_config
from tests.conftest import EXAMPLES

SPECS = sorted(EXAMPLES.glob("*.yaml"))


def test_there_are_examples():
    assert SPECS


@pytest.mark.parametrize("spec", SPECS, ids=lambda p: p.name)
def test_example_compiles(spec, tmp_path):
    _, plan = validate(spec)
    assert plan.steps
    with dflow_config({"mode": "debug", "debug_workdir": str(tmp_path)}):
        from dflow import InputArtifact

        staged = {rid: InputArtifact() for rid in staging_requests(plan)}
        workflow = build_workflow(plan, staged, StepRuntime())
    keys = [task.key for task in workflow.entrypoint.tasks]
    assert keys == [step.key for step in plan.steps]
