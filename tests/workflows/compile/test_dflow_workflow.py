"""Plan -> dflow Workflow: what a plan asks the store to stage (the rendered workflow: test_render.py)."""

from __future__ import annotations

from lamflow.workflows.api import validate
from lamflow.workflows.compile.dflow_workflow import staging_requests
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
