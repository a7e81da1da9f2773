"""``model:`` — the architecture: a named preset plus raw DeePMD-kit fragments merged over it."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field

from lamflow.workflows.spec.base import SpecModel

PresetName = Literal["dpa2-tiny", "dpa2-small", "dpa2-medium", "dpa2-large", "dpa3-tiny", "dpa3"]


class ModelSpec(SpecModel):
    preset: PresetName | None = Field(
        "dpa2-small",
        description="Descriptor/fitting preset: dpa2-small|medium|large and dpa3 follow DeePMD-kit's "
        "examples/water/{dpa2,dpa3}; *-tiny are CPU-sized for demos and tests. null = give "
        "descriptor and fitting_net in full.",
    )
    type_map: list[str] | None = Field(
        None,
        min_length=1,
        description="Element list of the model. Default: the union of all datasets' elements, in order of "
        "first appearance.",
    )
    descriptor: dict[str, Any] = Field(
        default_factory=dict, description="DeePMD-kit descriptor fragment, deep-merged over the preset."
    )
    fitting_net: dict[str, Any] = Field(
        default_factory=dict, description="DeePMD-kit fitting_net fragment, deep-merged over the preset."
    )
