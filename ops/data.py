"""Datasets in deepmd/npy or deepmd/hdf5: light inspection (for validation) and system lists for ``dp``.

Inspection only checks layout and shapes (memory-mapped); reading and converting formats is dpdata's and
DeePMD-kit's job. A deepmd/npy dataset is a directory that is a system (holds ``type.raw``) or contains
systems at any depth.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np

from lamflow.ops.contract import OpModel

NPY: Literal["deepmd/npy"] = "deepmd/npy"
HDF5: Literal["deepmd/hdf5"] = "deepmd/hdf5"
FORMATS = (NPY, HDF5)


class DatasetFormat(OpModel):
    """How a step reads one staged dataset: its format and, for deepmd/npy without type_map.raw, the
    element name of each type index."""

    format: Literal["deepmd/npy", "deepmd/hdf5"] = NPY
    type_map: list[str] | None = None


class DatasetError(ValueError):
    """A dataset is missing or not in the declared format; the message names the offending path."""


@dataclass(frozen=True)
class SystemInfo:
    path: str
    natoms: int
    nframes: int
    types: tuple[int, ...]  # distinct type indices used by the atoms
    type_map: tuple[str, ...] | None  # from type_map.raw, when present
    pbc: bool

    def elements(self, type_map: tuple[str, ...] | list[str] | None = None) -> tuple[str, ...]:
        """Element names present in this system (needs a type map from the file or the caller)."""
        names = tuple(type_map) if type_map is not None else self.type_map
        if names is None:
            raise DatasetError(f"{self.path}: no type_map.raw; give the dataset a type_map")
        return tuple(names[t] for t in self.types)


@dataclass(frozen=True)
class DatasetInfo:
    path: str
    format: str
    systems: tuple[SystemInfo, ...]

    @property
    def nframes(self) -> int:
        return sum(s.nframes for s in self.systems)


def find_npy_systems(root: Path) -> list[Path]:
    """Directories at or below ``root`` holding a ``type.raw`` (sorted, symlinks followed)."""
    found = []
    for dirpath, dirnames, filenames in os.walk(root, followlinks=True):
        dirnames.sort()
        if "type.raw" in filenames:
            found.append(Path(dirpath))
            dirnames[:] = []  # a system's set.* folders are not systems
    return sorted(found)


def _read_raw(path: Path) -> list[str]:
    return path.read_text().split()


def inspect_npy_system(path: Path) -> SystemInfo:
    try:
        types = [int(t) for t in _read_raw(path / "type.raw")]
    except ValueError as exc:
        raise DatasetError(f"{path / 'type.raw'}: not a list of integers") from exc
    if not types:
        raise DatasetError(f"{path / 'type.raw'}: empty")
    type_map = tuple(_read_raw(path / "type_map.raw")) if (path / "type_map.raw").exists() else None
    if type_map is not None and max(types) >= len(type_map):
        raise DatasetError(
            f"{path / 'type.raw'}: type index {max(types)} but type_map.raw names only {len(type_map)} types"
        )
    pbc = not (path / "nopbc").exists()
    sets = sorted(p for p in path.glob("set.*") if p.is_dir())
    if not sets:
        raise DatasetError(f"{path}: no set.* directory (not deepmd/npy)")
    natoms = len(types)
    nframes = 0
    for set_dir in sets:
        for required in ("coord.npy", "energy.npy") + (("box.npy",) if pbc else ()):
            if not (set_dir / required).exists():
                raise DatasetError(f"{set_dir / required}: missing")
        try:
            coord = np.load(set_dir / "coord.npy", mmap_mode="r")
            energy = np.load(set_dir / "energy.npy", mmap_mode="r")
        except (ValueError, OSError) as exc:
            raise DatasetError(f"{set_dir}: unreadable .npy file ({exc})") from exc
        if coord.ndim != 2 or coord.shape[1] != 3 * natoms:
            raise DatasetError(
                f"{set_dir / 'coord.npy'}: shape {coord.shape}, "
                f"expected (nframes, {3 * natoms}) for {natoms} atoms"
            )
        if energy.reshape(-1).shape[0] != coord.shape[0]:
            raise DatasetError(
                f"{set_dir / 'energy.npy'}: {energy.size} energies for {coord.shape[0]} frames"
            )
        nframes += coord.shape[0]
    return SystemInfo(str(path), natoms, nframes, tuple(sorted(set(types))), type_map, pbc)


def inspect_hdf5(path: Path) -> list[SystemInfo]:
    import h5py  # deferred: only deepmd/hdf5 users pay for it

    systems: list[SystemInfo] = []
    try:
        with h5py.File(path, "r") as h5:
            groups: list[str] = []
            h5.visit(lambda name: groups.append(name) if name.endswith("type.raw") else None)
            for name in sorted(groups):
                group = name[: -len("type.raw")].rstrip("/")
                node = h5[group] if group else h5
                types = [int(t) for t in np.asarray(node["type.raw"])]
                type_map = (
                    tuple(
                        x.decode() if isinstance(x, bytes) else str(x)
                        for x in np.asarray(node["type_map.raw"])
                    )
                    if "type_map.raw" in node
                    else None
                )
                nframes = sum(int(node[k]["coord.npy"].shape[0]) for k in node if k.startswith("set."))
                pbc = "nopbc" not in node
                systems.append(
                    SystemInfo(
                        f"{path}#/{group}", len(types), nframes, tuple(sorted(set(types))), type_map, pbc
                    )
                )
    except OSError as exc:
        raise DatasetError(f"{path}: not a readable HDF5 file ({exc})") from exc
    return systems


def inspect_dataset(path: str | Path, fmt: str = NPY) -> DatasetInfo:
    """Check a dataset's layout; raises :class:`DatasetError` naming the first bad file."""
    path = Path(path)
    if fmt not in FORMATS:
        raise DatasetError(f"{path}: unknown format {fmt!r} (expected one of {', '.join(FORMATS)})")
    if not path.exists():
        raise DatasetError(f"{path}: does not exist")
    if fmt == NPY:
        if not path.is_dir():
            raise DatasetError(f"{path}: not a directory (deepmd/npy datasets are directories)")
        systems = [inspect_npy_system(p) for p in find_npy_systems(path)]
    else:
        if not path.is_file():
            raise DatasetError(f"{path}: not a file (deepmd/hdf5 datasets are .h5/.hdf5 files)")
        systems = inspect_hdf5(path)
    if not systems:
        raise DatasetError(f"{path}: no {fmt} system found (a system holds type.raw and set.*/)")
    return DatasetInfo(str(path), fmt, tuple(systems))


def systems_for_dp(path: str | Path, fmt: str, type_map: list[str] | None, scratch: str | Path) -> list[str]:
    """System paths to hand to ``dp`` for one dataset.

    With an explicit ``type_map`` (deepmd/npy only), each system is shadowed under ``scratch`` by a
    directory of symlinks plus a written ``type_map.raw``, so DeePMD-kit maps types by element name.
    """
    path = Path(path)
    if fmt == HDF5:
        return [str(path)]
    systems = find_npy_systems(path)
    if type_map is None:
        return [str(s) for s in systems]
    out = []
    for index, system in enumerate(systems):
        shadow = Path(scratch) / f"{index:04d}-{system.name}"
        shadow.mkdir(parents=True, exist_ok=True)
        for entry in system.iterdir():
            if entry.name == "type_map.raw":
                continue
            link = shadow / entry.name
            if not link.exists():
                link.symlink_to(entry.resolve())
        (shadow / "type_map.raw").write_text("\n".join(type_map) + "\n")
        out.append(str(shadow))
    return out


def dataset_systems(
    names: list[str],
    datasets: Mapping[str, Path],
    formats: Mapping[str, DatasetFormat],
    scratch: Path,
) -> list[str]:
    """``dp`` system paths for the named staged datasets, in order."""
    systems: list[str] = []
    for name in names:
        if name not in datasets:
            raise KeyError(
                f"dataset {name!r} was not staged for this step (have: {', '.join(sorted(datasets))})"
            )
        fmt = formats[name]
        systems += systems_for_dp(datasets[name], fmt.format, fmt.type_map, scratch / name)
    return systems


def dataset_root(
    name: str, datasets: Mapping[str, Path], formats: Mapping[str, DatasetFormat], scratch: Path
) -> str:
    """One path that ``dp test -s`` / ``dp change-bias -s`` can search for the dataset's systems."""
    if formats[name].type_map is None:
        return str(datasets[name])
    dataset_systems([name], datasets, formats, scratch)
    return str(scratch / name)
