"""What validate read from the file system for a spec: its datasets' paths, checks, formats, splits,
subsets and raw conversions, the model's type map, and what the guards concluded."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from lamflow.ops.data.datasets import DatasetFormat, DatasetInfo
from lamflow.workflows.spec.spec import Spec


@dataclass(frozen=True)
class ResolvedSpec:
    """A validated spec with everything the compiler needs from the file system already read."""

    spec: Spec
    source: str  # the spec file as given by the user (for messages)
    base_dir: Path
    dataset_paths: dict[str, Path]  # absolute
    dataset_info: dict[str, DatasetInfo]
    dataset_formats: dict[str, DatasetFormat]  # how steps read each dataset
    type_map: list[str]  # the model's element list
    overlaps: frozenset[tuple[str, str]] = frozenset()  # (model, dataset) tested on training data, allowed
    notices: tuple[str, ...] = ()  # what the stages' checks tell the user (not errors)
    # (model, dataset) -> elements of the dataset the model's training data never held (rows are marked)
    unlearned: dict[tuple[str, str], tuple[str, ...]] = field(default_factory=dict)
    # split datasets: name -> {system: {"train": [frame...], "test": [...]}}; their parts are datasets
    # "<name>@train" / "<name>@test" in dataset_paths, dataset_info and dataset_formats
    splits: dict[str, dict[str, dict[str, list[int]]]] = field(default_factory=dict)
    # learning-curve train subsets "<name>@train-n<N>-r<k>" -> {train-part system: [frame...]}
    subsets: dict[str, dict[str, list[int]]] = field(default_factory=dict)
    # raw-format datasets -> the sources dpdata converts, in order, each as (the file or folder it reads,
    # the files it reads beside it: a pw.x input); validate converted them into dataset_paths[name] to
    # check them, the workflow's convert-datasets step converts them again
    conversions: dict[str, tuple[tuple[Path, ...], ...]] = field(default_factory=dict)

    def part(self, name: str, role: str) -> str:
        """The dataset results name for ``role`` ('train' or 'test'): a split dataset's part, else itself."""
        return f"{name}@{role}" if name in self.splits else name
