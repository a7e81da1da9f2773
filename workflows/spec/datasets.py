"""``datasets:`` — named training/test data in deepmd/npy or deepmd/hdf5."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from lamflow.workflows.spec.base import SpecModel


class DatasetSpec(SpecModel):
    path: str = Field(
        min_length=1,
        description="Directory (deepmd/npy: a system or a folder of systems, searched recursively) "
        "or file (deepmd/hdf5), relative to the spec file; or the URI of a dataset pushed with "
        "`lamflow data push` (s3://bucket/prefix/name), pulled once into this machine's cache.",
    )
    format: Literal["deepmd/npy", "deepmd/hdf5"] = Field("deepmd/npy", description="Data format.")
    type_map: list[str] | None = Field(
        None,
        min_length=1,
        description="Element name of each type index in type.raw. Needed when the systems have no "
        "type_map.raw; must agree with type_map.raw where both exist.",
    )
