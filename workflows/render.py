"""Render a plan as Argo manifests: the same dflow Workflow, built for a cluster. Pure: no network.

Staged inputs become S3 artifacts under ``<store_prefix>/inputs/<request>`` in the cluster's artifact
repository (no endpoint or credentials in the manifest: dflow is given empty keys), steps run
``settings.image`` and import the installed ``lamflow.ops``. Submitting, stable template names and
WorkflowTemplate/CronWorkflow kinds belong to the Argo engine.
"""

from __future__ import annotations

import re
from typing import Any

import yaml

from lamflow.workflows.compile.dflow_workflow import StepRuntime, build_workflow, staging_requests
from lamflow.workflows.compile.plan import Plan
from lamflow.workflows.dflow_config import dflow_config
from lamflow.workflows.settings import Settings


def input_key(prefix: str, request_id: str) -> str:
    return f"{prefix}/inputs/" + re.sub(r"[^A-Za-z0-9_.-]+", "-", request_id).strip("-")


def render_plan(plan: Plan, settings: Settings) -> list[dict[str, Any]]:
    with dflow_config({"mode": "default"}, {"access_key": "", "secret_key": ""}):
        from dflow import S3Artifact

        staged = {
            rid: S3Artifact(key=input_key(settings.store_prefix, rid)) for rid in staging_requests(plan)
        }
        workflow = build_workflow(plan, staged, StepRuntime(image=settings.image))
        return [yaml.safe_load(workflow.to_yaml())]
