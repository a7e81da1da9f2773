"""The root of a lamflow spec file: pure pydantic models, no file system."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from lamflow.workflows.spec.base import Name, SpecModel
from lamflow.workflows.spec.datasets import DatasetSpec
from lamflow.workflows.spec.external import ExternalModelSpec
from lamflow.workflows.spec.model import ModelSpec
from lamflow.workflows.spec.registry import RegistrySpec
from lamflow.workflows.spec.resources import ResourcesSpec
from lamflow.workflows.spec.stages import Stages


class Spec(SpecModel):
    """A lamflow workflow: datasets, a model architecture and the stages to run."""

    version: Literal[1] = Field(1, description="Spec format version.")
    name: Name = Field(description="Workflow name; used in run ids and manifests.")
    description: str = ""
    datasets: dict[Name, DatasetSpec] = Field(min_length=1, description="Dataset name -> data.")
    model: ModelSpec = Field(default_factory=ModelSpec)
    models: dict[Name, ExternalModelSpec] = Field(
        default_factory=dict,
        description="External models (files), referenced by the stages as 'models.<name>'.",
    )
    stages: Stages
    registry: RegistrySpec = Field(
        default_factory=RegistrySpec, description="Model registry: the promotion gate of this spec's models."
    )
    resources: ResourcesSpec = Field(
        default_factory=ResourcesSpec,
        description="What each kind of step asks of a Kubernetes node on Argo (GPUs, CPU, memory, node "
        "selection, retries); the local engine ignores it.",
    )
