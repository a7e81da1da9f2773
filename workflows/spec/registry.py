"""``registry:`` — how the models of this spec are promoted in the model registry."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from lamflow.workflows.spec.base import Name, SpecModel

GateMetric = Literal[
    "energy_rmse_per_atom",
    "energy_mae_per_atom",
    "force_rmse",
    "force_mae",
    "virial_rmse_per_atom",
    "virial_mae_per_atom",
    "property_rmse",
    "property_mae",
]


class PromoteGate(SpecModel):
    dataset: Name = Field(
        description="Test dataset (tested without change-bias) both models are compared on."
    )
    metric: GateMetric = Field(
        description="Error that the candidate must have lower than the champion (property_*: of property "
        "models, pooled over the property's components)."
    )


class RegistrySpec(SpecModel):
    promote_gate: PromoteGate | None = Field(
        None,
        description="`lamflow models promote` refuses (exit 3) a model that does not beat the current "
        "champion of its channel on this metric and test set.",
    )
