"""``datasets:`` — named data: deepmd/npy or deepmd/hdf5, or raw DFT outputs that dpdata reads."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field, StringConstraints, model_validator

from lamflow.workflows.spec.base import MAX_FRAMES, MAX_SEED, SpecModel

STORED_FORMATS = ("deepmd/npy", "deepmd/hdf5")  # read by the steps as they are; the others are converted


class SplitSpec(SpecModel):
    """Hold out test frames, per system: training stages use the train part, tests the test part."""

    test_fraction: float | None = Field(None, gt=0, lt=1, description="Share of each system's frames.")
    test_frames: int | None = Field(None, ge=1, le=MAX_FRAMES, description="Or this many frames per system.")
    seed: int = Field(1, ge=0, le=MAX_SEED, description="Which frames: the same seed, the same split.")

    @model_validator(mode="after")
    def _one_rule(self) -> SplitSpec:
        if (self.test_fraction is None) == (self.test_frames is None):
            raise ValueError("give exactly one of test_fraction or test_frames")
        return self


PROPERTY_NAME = r"^[A-Za-z_][A-Za-z0-9_]*$"  # a file name stem DeePMD-kit reads as <name>.npy
PropertyName = Annotated[str, StringConstraints(pattern=PROPERTY_NAME, max_length=48)]
MAX_TASK_DIM = 4096
RESERVED_ARRAYS = ("coord", "box", "energy", "force", "virial", "real_atom_types", "fparam", "aparam")


class PropertySpec(SpecModel):
    """A per-frame property the dataset holds in ``set.*/<name>.npy`` (DeePMD-kit's property fitting)."""

    dim: int = Field(ge=1, le=MAX_TASK_DIM, description="Values per frame (DeePMD-kit's task_dim).")
    intensive: bool = Field(
        description="true: the property does not grow with the system (a band gap, HOMO/LUMO): DeePMD-kit "
        "averages the atomic contributions; false: it is a sum over atoms (a formation energy per cell)."
    )
    components: list[Annotated[str, StringConstraints(min_length=1, max_length=32)]] | None = Field(
        None, description="A name for each of the dim values (for tables and plots); default <name>[i]."
    )

    @model_validator(mode="after")
    def _components(self) -> PropertySpec:
        if self.components is not None and len(self.components) != self.dim:
            raise ValueError(f"components names {len(self.components)} values; dim is {self.dim}")
        return self

    def component_names(self, name: str) -> list[str]:
        return list(self.components) if self.components else [f"{name}[{i}]" for i in range(self.dim)]


class DatasetSpec(SpecModel):
    @property
    def converted(self) -> bool:
        """Whether validate converts this dataset to deepmd/npy (raw DFT outputs)."""
        return self.format not in STORED_FORMATS

    @property
    def stored_format(self) -> str:
        """The format the steps read: deepmd/npy for a converted dataset."""
        return "deepmd/npy" if self.converted else self.format

    path: str = Field(
        min_length=1,
        description="Directory (deepmd/npy: a system or a folder of systems, searched recursively) "
        "or file (deepmd/hdf5), relative to the spec file; or the URI of a dataset pushed with "
        "`lamflow data push` (s3://bucket/prefix/name), pulled once into this machine's cache.",
    )
    format: Literal[
        "deepmd/npy",
        "deepmd/hdf5",
        "deepmd/npy/mixed",
        "vasp/outcar",
        "vasp/xml",
        "qe/pw/scf",
        "cp2k/output",
        "abacus/md",
        "abacus/scf",
        "extxyz",
    ] = Field(
        "deepmd/npy",
        description="Data format. Raw DFT outputs (vasp/outcar, vasp/xml, qe/pw/scf, cp2k/output, abacus/md, "
        "abacus/scf, extxyz, deepmd/npy/mixed) are read with dpdata: checked at validate (converted once per "
        "content into this machine's cache), and converted in the workflow by the convert-datasets step, "
        "whose deepmd/npy output every step reading the dataset takes; `path` may then be a glob "
        "(data/OUTCAR-*), and type_map sets the element order.",
    )
    type_map: list[str] | None = Field(
        None,
        min_length=1,
        description="Element name of each type index in type.raw. Needed when the systems have no "
        "type_map.raw; must agree with type_map.raw where both exist.",
    )
    split: SplitSpec | None = Field(
        None,
        description="Train/test split per system (deepmd/npy): training, change-bias re-fits and exploration "
        "read the train part; validation, tests, drift checks and evaluations the test part.",
    )
    properties: dict[PropertyName, PropertySpec] = Field(
        default_factory=dict,
        description="Per-frame properties the systems hold as set.*/<name>.npy (for property "
        "fine-tuning), each checked at validate: present in every set, dim values per frame, finite. A "
        "dataset with properties may lack energies; energy stages refuse such a dataset.",
    )

    @model_validator(mode="after")
    def _properties_are_stored(self) -> DatasetSpec:
        if self.properties and self.format not in STORED_FORMATS:
            raise ValueError(
                f"properties are read from deepmd/npy or deepmd/hdf5 sets; {self.format} is converted by "
                "dpdata, which does not carry them"
            )
        for name in self.properties:
            if name in RESERVED_ARRAYS:
                raise ValueError(
                    f"properties.{name}: {name}.npy is a label DeePMD-kit reads for energy models"
                )
        return self
