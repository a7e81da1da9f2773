"""``datasets:`` — named training/test data in deepmd/npy or deepmd/hdf5."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from lamflow.workflows.spec.base import SpecModel, SpecPath


class DatasetSpec(SpecModel):
    path: SpecPath = Field(
        description="Directory (deepmd/npy: a system or a folder of systems, searched recursively) "
        "or file (deepmd/hdf5). Relative paths are relative to the spec file."
    )
    format: Literal["deepmd/npy", "deepmd/hdf5"] = Field("deepmd/npy", description="Data format.")
    type_map: list[str] | None = Field(
        None,
        min_length=1,
        description="Element name of each type index in type.raw. Needed when the systems have no "
        "type_map.raw; must agree with type_map.raw where both exist.",
    )
