"""What each step asks of the cluster: the spec's ``resources:`` over the settings' cluster profile.

Pure. :func:`pod_fields` turns one resolved profile into the Argo template fields it sets (container
resources and environment, nodeSelector, tolerations, priorityClassName, activeDeadlineSeconds,
retryStrategy).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from lamflow.ops.dp import NPROC_ENV
from lamflow.workflows.errors import UsageError
from lamflow.workflows.spec.resources import TRAINING_CLASSES, ResourceProfile, ResourcesSpec

GPU = "nvidia.com/gpu"
# retries back off 1, 2, 4 ... minutes (at most an hour apart): a preempted node pool needs time to refill
BACKOFF = {"duration": "1m", "factor": "2", "maxDuration": "1h"}  # IntOrString: strings in the schema


@dataclass(frozen=True)
class Defaults:
    gpus: int
    cpu: str
    memory: str
    retries: int


# cluster profile -> resource class ("training" or "default") -> defaults
PROFILE_DEFAULTS = {
    "gpu": {"training": Defaults(1, "8", "32Gi", 3), "default": Defaults(1, "4", "16Gi", 2)},
    "cpu": {"training": Defaults(0, "8", "16Gi", 3), "default": Defaults(0, "2", "8Gi", 2)},
}


@dataclass(frozen=True)
class PodResources:
    """One resource class, resolved."""

    gpus: int
    cpu: str
    memory: str
    cpu_limit: str | None
    memory_limit: str
    retries: int
    training: bool
    node_selector: dict[str, str] = field(default_factory=dict)
    tolerations: tuple[dict[str, str], ...] = ()
    priority_class: str | None = None
    deadline_s: int | None = None


def resolve(resource_class: str, spec: ResourcesSpec, cluster_profile: str) -> PodResources:
    """The resources of a step class; refuses GPUs on a CPU-only cluster profile, naming the spec field."""
    where, profile = spec.for_class(resource_class)
    training = resource_class in TRAINING_CLASSES
    base = PROFILE_DEFAULTS[cluster_profile]["training" if training else "default"]
    gpus = profile.gpus if profile.gpus is not None else base.gpus
    if gpus and cluster_profile == "cpu":
        raise UsageError(
            f"{where}.gpus: {gpus} GPU(s) asked for, but the cluster profile is cpu "
            "(LAMFLOW_CLUSTER_PROFILE=cpu: nodes without GPUs); use gpus: 0 or LAMFLOW_CLUSTER_PROFILE=gpu"
        )
    memory = profile.memory or base.memory
    return PodResources(
        gpus=gpus,
        cpu=profile.cpu or base.cpu,
        memory=memory,
        cpu_limit=profile.cpu_limit,
        memory_limit=profile.memory_limit or memory,
        retries=profile.retries if profile.retries is not None else base.retries,
        training=training,
        node_selector=dict(profile.node_selector),
        tolerations=tuple(_toleration(t) for t in profile.tolerations),
        priority_class=profile.priority_class,
        deadline_s=profile.deadline_s,
    )


def check_cluster(resources: ResourcesSpec, classes: Iterable[str], settings: Any) -> None:
    """What the cluster cannot give, in one line naming the spec field: more GPUs per pod than its nodes
    have (``LAMFLOW_CLUSTER_GPUS_PER_NODE``), training across nodes without an s3:// store (the pods of a
    job on other nodes exchange inputs, checkpoints and outputs through it)."""
    for resource_class in classes:
        where, profile = resources.for_class(resource_class)
        if profile.gpus is not None and profile.gpus > settings.cluster_gpus_per_node:
            raise UsageError(
                f"{where}.gpus: {profile.gpus} GPUs per pod, but the cluster's nodes have "
                f"{settings.cluster_gpus_per_node} (LAMFLOW_CLUSTER_GPUS_PER_NODE); use more nodes instead"
            )
        if (
            (profile.nodes or 1) > 1
            and resource_class in TRAINING_CLASSES
            and not settings.store.startswith("s3://")
        ):
            raise UsageError(
                f"{where}.nodes: training across nodes on Argo needs an s3:// store (LAMFLOW_STORE="
                f"{settings.store} is a directory on this machine, which pods on other nodes cannot reach)"
            )


def _toleration(t: Any) -> dict[str, str]:
    return {k: v for k, v in t.model_dump().items() if v is not None}


def pod_fields(resources: PodResources) -> tuple[dict[str, Any], dict[str, Any]]:
    """(fields of the template's container, fields of the template itself)."""
    requests: dict[str, str] = {"cpu": resources.cpu, "memory": resources.memory}
    limits: dict[str, str] = {"memory": resources.memory_limit}
    if resources.cpu_limit is not None:
        limits["cpu"] = resources.cpu_limit
    if resources.gpus:
        # extended resources: the request must equal the limit
        requests[GPU] = limits[GPU] = str(resources.gpus)
    env = [{"name": "OMP_NUM_THREADS", "value": _whole_cores(resources.cpu)}]
    if resources.training and resources.gpus > 1:
        env.append({"name": NPROC_ENV, "value": str(resources.gpus)})
    container = {"resources": {"requests": requests, "limits": limits}, "env": env}
    template: dict[str, Any] = {
        "retryStrategy": {"limit": str(resources.retries), "retryPolicy": "OnError", "backoff": dict(BACKOFF)}
    }
    if resources.node_selector:
        template["nodeSelector"] = dict(sorted(resources.node_selector.items()))
    if resources.tolerations:
        template["tolerations"] = [dict(t) for t in resources.tolerations]
    if resources.priority_class:
        template["priorityClassName"] = resources.priority_class
    if resources.deadline_s:
        template["activeDeadlineSeconds"] = str(resources.deadline_s)
    return container, template


def _whole_cores(cpu: str) -> str:
    from lamflow.workflows.spec.resources import quantity_value

    return str(max(1, int(quantity_value(cpu))))


__all__ = ["GPU", "PodResources", "ResourceProfile", "pod_fields", "resolve"]
