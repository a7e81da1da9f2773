"""Every example spec in the repository validates and compiles (plan + dflow workflow)."""

from __future__ import annotations

import json
import os

import pytest

from lamflow.workflows.api import validate
from lamflow.workflows.compile.dflow_workflow import StepRuntime, build_workflow, staging_requests
from lamflow.workflows.dflow_config import dflow_config
from tests.conftest import EXAMPLES, REPO

SPECS = sorted(EXAMPLES.glob("*.yaml"))
BENCH_SPECS = sorted((REPO / "bench").glob("*.yaml"))  # compiled too; no golden files
GOLDEN = REPO / "tests" / "golden"
REGENERATE = os.environ.get("LAMFLOW_REGEN_GOLDEN") == "1" and not os.environ.get("CI")


def test_there_are_examples():
    assert SPECS


@pytest.mark.parametrize("spec", SPECS + BENCH_SPECS, ids=lambda p: p.parent.name + "/" + p.name)
def test_example_compiles(spec, tmp_path):
    """Every example builds as a dflow workflow; one with a loop as it runs: its first iteration, and all
    its iterations with the steps after it."""
    from lamflow.workflows.compile.loops import LoopProgress, unroll

    _, plan = validate(spec)
    assert plan.steps
    stopped = {loop.key: LoopProgress(loop.max_iterations, stopped=True) for loop in plan.loops}
    for ran in [unroll(plan), unroll(plan, stopped)] if plan.loops else [plan]:
        with dflow_config({"mode": "debug", "debug_workdir": str(tmp_path)}):
            from dflow import InputArtifact

            staged = {rid: InputArtifact() for rid in staging_requests(ran)}
            workflow = build_workflow(ran, staged, StepRuntime())
        keys = [task.key for task in workflow.entrypoint.tasks]
        assert keys == [step.key for step in ran.steps]


@pytest.mark.parametrize("spec", SPECS, ids=lambda p: p.name)
def test_example_plan_matches_golden(spec):
    """The compiled plan (step keys, DeePMD-kit inputs, dependencies) is committed; any change shows up
    in review. Regenerate deliberately with LAMFLOW_REGEN_GOLDEN=1 (never in CI)."""
    _, plan = validate(spec)
    rendered = json.dumps(plan.record(), indent=2, sort_keys=True) + "\n"
    golden = GOLDEN / f"{spec.stem}.plan.json"
    if REGENERATE:
        golden.write_text(rendered)
    assert golden.exists(), f"missing {golden}; run LAMFLOW_REGEN_GOLDEN=1 pytest tests/test_examples.py"
    assert rendered == golden.read_text(), f"{golden} differs; regenerate if the change is intended"


KINDS = ("workflow", "workflowtemplate", "cronworkflow")


def render_example(spec, kind: str) -> str:
    """The example as a manifest, with the volatile lamflow version replaced by VERSION."""
    from lamflow.workflows.api import render
    from lamflow.workflows.argo.render import RenderOptions, to_yaml, version
    from lamflow.workflows.settings import Settings

    settings = Settings(
        image="lamflow-ops:golden",
        store_prefix="lamflow",
        cluster_profile="gpu",
        store="s3://lamflow/lab",
        group=True,
    )
    options = RenderOptions(kind=kind, schedule="0 3 * * 1" if kind == "cronworkflow" else None)
    text = to_yaml(render(spec, settings, options))
    return text.replace(version(), "VERSION")


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("spec", SPECS, ids=lambda p: p.name)
def test_example_manifests_match_golden(spec, kind):
    """The rendered Argo documents are committed too (tests/golden/argo/); two renders are identical."""
    rendered = render_example(spec, kind)
    assert rendered == render_example(spec, kind), "rendering is not deterministic"
    assert "&id" not in rendered, "shared parts are written out, not as YAML anchors"
    golden = GOLDEN / "argo" / f"{spec.stem}.{kind}.yaml"
    if REGENERATE:
        golden.parent.mkdir(exist_ok=True)
        golden.write_text(rendered)
    assert golden.exists(), f"missing {golden}; run LAMFLOW_REGEN_GOLDEN=1 pytest tests/test_examples.py"
    assert rendered == golden.read_text(), f"{golden} differs; regenerate if the change is intended"
