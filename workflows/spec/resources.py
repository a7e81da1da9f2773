"""``resources:`` — what each kind of step asks of a Kubernetes node when the spec runs on Argo.

Keys are the steps' resource classes: ``pretrain`` and ``finetune`` (the training steps) and ``default``
(everything else: freeze, change-bias, test, and a training stage without an entry of its own). The cluster
side (which nodes have GPUs) comes from the settings' cluster profile (``LAMFLOW_CLUSTER_PROFILE``), which
also gives the defaults when the spec is silent. The local engine reads only the training classes' ``gpus``
(on a machine that has GPUs: engines/machine.py); the rest is the cluster's.
"""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal

from pydantic import Field, PlainValidator, WithJsonSchema, field_validator, model_validator

from lamflow.workflows.spec.base import SpecModel

# Kubernetes resource.Quantity in the forms people write: 500m, 2, 1.5, 64Gi, 8G, 1e3 (no signs)
_QUANTITY = re.compile(r"^([0-9]+(\.[0-9]*)?|\.[0-9]+)(m|k|M|G|T|P|E|Ki|Mi|Gi|Ti|Pi|Ei|[eE][0-9]+)?$")
_SUFFIX = {
    "m": 1e-3, "": 1.0, "k": 1e3, "M": 1e6, "G": 1e9, "T": 1e12, "P": 1e15, "E": 1e18,
    "Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "Ti": 2**40, "Pi": 2**50, "Ei": 2**60,
}  # fmt: skip


def _quantity(value: Any) -> str:
    if isinstance(value, bool) or not isinstance(value, str | int):
        raise ValueError("expected a Kubernetes quantity such as 4, 500m or 16Gi")
    text = str(value)
    if not _QUANTITY.match(text):
        hint = " (bytes are Ki/Mi/Gi or k/M/G: 4Gi, not 4GB)" if re.search(r"[KMGTPE]i?B$", text) else ""
        raise ValueError(f"{text!r} is not a Kubernetes quantity such as 4, 500m or 16Gi{hint}")
    return text


MIN_MEMORY = 64 * 2**20  # bytes: below this no step's Python starts; smaller requests are slips of a unit
MAX_CPU = 1024.0  # cores per pod: no node has more; larger requests are millicores written without 'm'
MAX_GPUS = 16  # GPUs per pod: the largest nodes have 8 (16 on a few)
MAX_NODES = 256  # nodes of one training job: OpenLAM-scale pretraining runs on tens
TRAINING_CLASSES = ("pretrain", "finetune")  # the resource classes whose steps run `dp train`


def _memory_meaning(text: str) -> str | None:
    """Why a memory quantity cannot be what the user meant (Kubernetes reads a bare number as bytes and
    'm' as thousandths of a byte), or None."""
    if quantity_value(text) >= MIN_MEMORY:
        return None
    match = _QUANTITY.match(text)
    assert match is not None
    number, suffix = match.group(1), match.group(3) or ""
    if suffix == "":
        means, hint = f"{number} bytes (a number without a unit is bytes)", f"; did you mean {number}Gi?"
    elif suffix == "m":
        means, hint = f"{number} thousandths of a byte ('m' is milli)", f"; did you mean {number}Mi?"
    else:
        means, hint = f"{quantity_value(text):.0f} bytes", ""
    return f"{text} means {means}, below the 64Mi a step needs{hint}"


def _cpu_meaning(text: str) -> str | None:
    value = quantity_value(text)
    if value < 1e-3:
        return f"{text} is below Kubernetes' smallest CPU unit, 1m (a thousandth of a core)"
    if value > MAX_CPU:
        return (
            f"{text} means {value:g} cores; no node has more than {MAX_CPU:g} (for thousandths of a core "
            f"write {text}m)"
        )
    return None


def quantity_value(text: str) -> float:
    """A quantity as a number (cores or bytes), to compare a request with its limit."""
    match = _QUANTITY.match(text)
    assert match is not None
    number, suffix = match.group(1), match.group(3) or ""
    if suffix[:1] in ("e", "E"):
        return float(number) * 10 ** int(suffix[1:])
    return float(number) * _SUFFIX[suffix]


Quantity = Annotated[
    str,
    PlainValidator(_quantity),
    WithJsonSchema({"type": ["string", "integer"], "pattern": _QUANTITY.pattern}),
]
LabelValue = Annotated[str, Field(pattern=r"^([A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?)?$")]
LabelKey = Annotated[
    str,
    Field(pattern=r"^([a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?/)?[A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?$"),
]


class Toleration(SpecModel):
    """A Kubernetes toleration (e.g. for a tainted GPU node pool)."""

    key: LabelKey | None = None
    operator: Literal["Equal", "Exists"] = "Equal"
    value: LabelValue | None = None
    effect: Literal["NoSchedule", "PreferNoSchedule", "NoExecute"] | None = None

    @model_validator(mode="after")
    def _exists_has_no_value(self) -> Toleration:
        if self.operator == "Exists" and self.value is not None:
            raise ValueError("operator Exists takes no value")
        return self


class ResourceProfile(SpecModel):
    """What one kind of step asks for; unset fields take the cluster profile's defaults."""

    gpus: int | None = Field(
        None,
        ge=0,
        le=MAX_GPUS,
        description="nvidia.com/gpu per pod (whole GPUs); more than 1 launches training with torchrun.",
    )
    nodes: int | None = Field(
        None,
        ge=1,
        le=MAX_NODES,
        description="Nodes one training step runs on, each with `gpus` GPUs (data parallel, torchrun with "
        "c10d rendezvous): a Kubeflow PyTorchJob on Argo, that many torchrun 'nodes' on this machine "
        "locally. Training classes (pretrain, finetune) only.",
    )
    cpu: Quantity | None = Field(None, description="CPU request (cores), e.g. 8 or 500m.")
    memory: Quantity | None = Field(None, description="Memory request, e.g. 32Gi.")
    cpu_limit: Quantity | None = Field(None, description="CPU limit (default: none).")
    memory_limit: Quantity | None = Field(None, description="Memory limit (default: the request).")
    node_selector: dict[LabelKey, LabelValue] = Field(default_factory=dict, description="Pod nodeSelector.")
    tolerations: list[Toleration] = Field(default_factory=list, description="Pod tolerations.")
    priority_class: Annotated[str, Field(pattern=r"^[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?$")] | None = Field(
        None, description="Pod priorityClassName."
    )
    deadline_s: int | None = Field(
        None, ge=1, le=90 * 86400, description="activeDeadlineSeconds of each attempt of the step."
    )
    retries: int | None = Field(
        None,
        ge=0,
        le=20,
        description="Attempts after a pod is lost (eviction, spot preemption, node failure); a step that "
        "fails on its input is never retried.",
    )

    @field_validator("memory", "memory_limit")
    @classmethod
    def _memory_is_bytes(cls, value: str | None) -> str | None:
        problem = None if value is None else _memory_meaning(value)
        if problem is not None:
            raise ValueError(problem)
        return value

    @field_validator("cpu", "cpu_limit")
    @classmethod
    def _cpu_is_cores(cls, value: str | None) -> str | None:
        problem = None if value is None else _cpu_meaning(value)
        if problem is not None:
            raise ValueError(problem)
        return value

    @model_validator(mode="after")
    def _limits_cover_requests(self) -> ResourceProfile:
        for request, limit in (("cpu", "cpu_limit"), ("memory", "memory_limit")):
            asked, capped = getattr(self, request), getattr(self, limit)
            if asked is not None and capped is not None and quantity_value(capped) < quantity_value(asked):
                raise ValueError(f"{limit} {capped} is below the {request} request {asked}")
        return self


class ResourcesSpec(SpecModel):
    """``resources:``, one profile per resource class."""

    default: ResourceProfile = Field(
        default_factory=ResourceProfile, description="Steps without a class of their own (freeze, test ...)."
    )
    pretrain: ResourceProfile | None = Field(None, description="The pretraining step.")
    finetune: ResourceProfile | None = Field(None, description="Each fine-tuning step.")

    @field_validator("default")
    @classmethod
    def _only_training_spans_nodes(cls, value: ResourceProfile) -> ResourceProfile:
        if (value.nodes or 1) > 1:
            raise ValueError(
                f"nodes {value.nodes}: only training steps run across nodes; set nodes under "
                f"{' or '.join(TRAINING_CLASSES)} (freeze, test, MD and labelling run in one pod)"
            )
        return value

    def for_class(self, name: str) -> tuple[str, ResourceProfile]:
        """The YAML path and profile a step of resource class ``name`` uses."""
        chosen = getattr(self, name, None) if name in TRAINING_CLASSES else None
        if chosen is None:
            return "resources.default", self.default
        return f"resources.{name}", chosen
