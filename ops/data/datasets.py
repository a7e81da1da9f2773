"""Datasets in deepmd/npy or deepmd/hdf5: pre-flight checks (for ``validate`` and ``lamflow data check``)
and system lists for ``dp``.

Checks read what a step will read: every label array (``coord``, ``energy``, ``force``, ``box``,
``virial``, ``real_atom_types`` of mixed-type systems) must be numeric, shaped for its system's frame and
atom counts, and finite; every system needs a frame; type indices must be in range; text files UTF-8.
Arrays are memory-mapped and scanned in chunks. Finding systems never follows a symbolic link out of the
dataset and stops past a limit of entries or depth, so no path can make it walk a whole file system.
Reading and converting formats is dpdata's and DeePMD-kit's job.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any, Literal

import numpy as np
from pydantic import Field, model_validator

from lamflow.ops.runtime.models import OpModel

NPY: Literal["deepmd/npy"] = "deepmd/npy"
HDF5: Literal["deepmd/hdf5"] = "deepmd/hdf5"
FORMATS = (NPY, HDF5)
MAX_ENTRIES = 200_000  # files and folders looked at while finding systems under one dataset path
MAX_DEPTH = 16
CHUNK = 1 << 22  # values per finiteness scan

# label -> values per frame: ("atoms", k) = k per atom, ("frame", k) = k per frame
ARRAYS: dict[str, tuple[str, int]] = {
    "coord": ("atoms", 3),
    "force": ("atoms", 3),
    "energy": ("frame", 1),
    "box": ("frame", 9),
    "virial": ("frame", 9),
    "real_atom_types": ("atoms", 1),
}


class DatasetFormat(OpModel):
    """How a step reads one staged dataset: its format and, for deepmd/npy without type_map.raw, the
    element name of each type index."""

    format: Literal["deepmd/npy", "deepmd/hdf5"] = NPY
    type_map: list[str] | None = None


class StagedDatasets(OpModel):
    """The datasets a step reads, as input artifacts: ``datasets`` staged from outside the workflow, and
    ``converted``: those the workflow's ``convert-datasets`` step made from raw DFT outputs (and their
    split parts and subsets). Ops see one ``datasets`` mapping: the two are merged on validation."""

    datasets: dict[str, Path] = Field(default_factory=dict)
    converted: dict[str, Path] = Field(default_factory=dict)

    @model_validator(mode="before")
    @classmethod
    def _merge(cls, data: Any) -> Any:
        if isinstance(data, dict) and data.get("converted"):
            data = {**data, "datasets": {**(data.get("datasets") or {}), **data["converted"]}}
        return data


class DatasetError(ValueError):
    """A dataset is missing, malformed or not in the declared format; the message names the bad file."""


@dataclass(frozen=True)
class SystemInfo:
    path: str
    natoms: int
    nframes: int
    types: tuple[int, ...]  # distinct type indices used by the atoms
    type_map: tuple[str, ...] | None  # from type_map.raw, when present
    pbc: bool
    arrays: tuple[str, ...] = ()  # label arrays present in every set
    energy_per_atom: tuple[float, float] | None = None  # (min, max) in eV/atom
    type_counts: tuple[int, ...] = ()  # atoms of each type index (the system's composition)
    other_arrays: tuple[str, ...] = ()  # other .npy files in the sets (hessian, aparam, ...): unused
    # declared properties checked: (name, frames, per-component sums, per-component sums of squares)
    properties: tuple[tuple[str, int, tuple[float, ...], tuple[float, ...]], ...] = ()

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
    systems: tuple[SystemInfo, ...] = field(default_factory=tuple)

    @property
    def nframes(self) -> int:
        return sum(s.nframes for s in self.systems)


def _walk(root: Path, max_entries: int, max_depth: int) -> Iterator[tuple[Path, list[str]]]:
    """(directory, file names) under ``root``, sorted; symbolic links are followed only when they stay
    inside ``root`` (each directory once), and more than ``max_entries``/``max_depth`` is an error."""
    base = root.resolve()
    if base == Path(base.anchor):  # refused at once: walking a whole file system takes long, for nothing
        raise DatasetError(f"{root}: the file system's root is not a dataset's folder")
    seen: set[Path] = set()
    stack: list[tuple[Path, int]] = [(root, 0)]
    count = 0
    while stack:
        directory, depth = stack.pop()
        real = directory.resolve()
        if real in seen:
            continue
        seen.add(real)
        try:
            entries = sorted(os.scandir(directory), key=lambda e: e.name)
        except OSError as exc:
            raise DatasetError(f"{directory}: cannot list ({exc.strerror})") from None
        count += len(entries)
        if count > max_entries:
            raise DatasetError(
                f"{root}: more than {max_entries} files and folders while looking for systems; "
                f"is this the dataset's folder? (limit: {max_entries} entries, {max_depth} folders deep)"
            )
        files = [e.name for e in entries if not e.is_dir()]
        yield directory, files
        if "type.raw" in files:
            continue  # a system's set.* folders hold no systems
        subdirs = []
        for entry in entries:
            if not entry.is_dir():
                continue
            target = Path(entry.path).resolve()
            if entry.is_symlink() and not target.is_relative_to(base):
                continue  # never follow a link out of the dataset
            subdirs.append(Path(entry.path))
        if subdirs and depth + 1 > max_depth:
            raise DatasetError(
                f"{root}: more than {max_depth} folders deep while looking for systems (at {directory}); "
                f"is this the dataset's folder? (limit: {max_entries} entries, {max_depth} folders deep)"
            )
        stack.extend((d, depth + 1) for d in reversed(subdirs))


def find_npy_systems(root: Path, max_entries: int = MAX_ENTRIES, max_depth: int = MAX_DEPTH) -> list[Path]:
    """Directories at or below ``root`` holding a ``type.raw`` (sorted)."""
    return sorted(d for d, files in _walk(root, max_entries, max_depth) if "type.raw" in files)


def _read_text(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise DatasetError(f"{path}: not UTF-8 text") from None
    except OSError as exc:
        raise DatasetError(f"{path}: unreadable ({exc.strerror})") from None


def _check_types(where: str, types: np.ndarray, type_map: tuple[str, ...] | None) -> None:
    if types.size and types.min() < 0:
        raise DatasetError(f"{where}: negative type index {int(types.min())}")
    if type_map is not None and types.size and types.max() >= len(type_map):
        raise DatasetError(
            f"{where}: type index {int(types.max())} but type_map.raw names only {len(type_map)} types"
        )


def _check_array(
    where: str, array: Any, name: str, natoms: int, nframes: int | None, shape: tuple[str, int] | None = None
) -> int:
    """Check one label array (``shape``: values per frame, default :data:`ARRAYS`'s); returns its frames."""
    dtype = np.dtype(array.dtype)
    if not (np.issubdtype(dtype, np.integer) or np.issubdtype(dtype, np.floating)):
        raise DatasetError(f"{where}: holds {dtype} values, not numbers")
    kind, per = shape or ARRAYS[name]
    width = per * natoms if kind == "atoms" else per
    frames = int(array.shape[0]) if array.ndim >= 1 else 1
    if array.ndim == 0 or int(np.prod(array.shape)) != frames * width:
        expected = f"({nframes if nframes is not None else 'nframes'}, {width})"
        raise DatasetError(f"{where}: shape {tuple(array.shape)}, expected {expected} for {natoms} atoms")
    if frames == 0:
        raise DatasetError(f"{where}: no frames")
    if nframes is not None and frames != nframes:
        raise DatasetError(f"{where}: {frames} frames but coord has {nframes}")
    if np.issubdtype(dtype, np.floating):
        start = 0
        for chunk in _chunks(array):
            # a non-finite value makes the chunk's sum non-finite (so does overflow: then look closer);
            # a sum runs at memory speed, an element-wise check at a fraction of it
            if not (np.isfinite(np.add.reduce(chunk)) or np.isfinite(chunk).all()):
                at = int(np.argmin(np.isfinite(chunk)))
                bad = start + at
                raise DatasetError(f"{where}: non-finite value {chunk[at]} (frame {bad // width})")
            start += chunk.size
    return frames


def _real_types(where: str, array: Any, type_map: tuple[str, ...] | None) -> frozenset[int]:
    """The type indices ``real_atom_types`` uses, checked, read a chunk at a time (its memory stays small
    whatever the system's size)."""
    counts = np.zeros(0, dtype=np.int64)
    for values in _chunks(array):
        chunk = values.astype(np.int64, copy=False)
        try:
            found = np.bincount(chunk)  # one pass: refuses a negative index; its length is the largest + 1
        except ValueError:
            _check_types(where, chunk, type_map)  # names the negative index
            raise
        _check_types(where, np.array([found.size - 1]) if found.size else found, type_map)
        if found.size > counts.size:
            found[: counts.size] += counts
            counts = found
        else:
            counts[: found.size] += found
    return frozenset(np.flatnonzero(counts).tolist())


STREAM_BYTES = 1 << 22  # larger .npy files are read front to back a chunk at a time; smaller ones whole


class NpyStream:
    """A large ``.npy`` file, read front to back :data:`CHUNK` values at a time into one reused buffer:
    sequential reads as large as a plain copy makes, and memory that stays one chunk whatever the file's
    size (a memory map would keep every page it touched resident until the end)."""

    def __init__(self, path: Path) -> None:
        with path.open("rb") as handle:
            version = np.lib.format.read_magic(handle)
            read_header = (
                np.lib.format.read_array_header_1_0
                if version == (1, 0)
                else np.lib.format.read_array_header_2_0
            )
            shape, fortran, dtype = read_header(handle)
            self.offset = handle.tell()
        if dtype.hasobject:
            raise ValueError("holds Python objects (pickled), not numbers")
        self.path, self.shape, self.dtype, self.fortran = path, tuple(shape), np.dtype(dtype), fortran
        self.ndim = len(self.shape)
        self.size = int(np.prod(self.shape))
        if path.stat().st_size < self.offset + self.size * self.dtype.itemsize:
            raise ValueError(f"shorter than its header's shape {self.shape} needs")

    def chunks(self, values: int = CHUNK) -> Iterator[np.ndarray]:
        """The values in file order (for a Fortran-ordered file, that order: finiteness does not care)."""
        buffer = np.empty(min(values, self.size), dtype=self.dtype)
        with self.path.open("rb", buffering=0) as handle:
            handle.seek(self.offset)
            for start in range(0, self.size, values):
                view = buffer[: min(values, self.size - start)]
                if handle.readinto(view.data.cast("B")) != view.nbytes:
                    raise DatasetError(f"{self.path}: shorter than its header's shape {self.shape} needs")
                yield view

    def __array__(self, dtype: Any = None, copy: Any = None) -> np.ndarray:
        array = np.load(self.path, allow_pickle=False)
        return array if dtype is None else array.astype(dtype)


def _load_npy(path: Path) -> np.ndarray | NpyStream:
    try:
        if path.stat().st_size > STREAM_BYTES:
            return NpyStream(path)
        return np.load(path, allow_pickle=False)
    except (ValueError, OSError, EOFError) as exc:
        raise DatasetError(f"{path}: not a readable .npy array ({str(exc).splitlines()[0][:120]})") from None


def _chunks(array: Any) -> Iterator[np.ndarray]:
    if isinstance(array, NpyStream):
        yield from array.chunks()
        return
    flat = array.reshape(-1) if isinstance(array, np.ndarray) else np.asarray(array).reshape(-1)
    for start in range(0, flat.size, CHUNK):
        yield flat[start : start + CHUNK]


@dataclass(frozen=True)
class _SetReport:
    frames: int
    labels: frozenset[str]  # label arrays present
    others: frozenset[str]  # other arrays (no loss reads them)
    real_types: frozenset[int] | None  # types used per real_atom_types (mixed type), if present
    energy_per_atom: tuple[float, float] | None  # None: no energies (a property dataset)
    properties: dict[str, tuple[int, np.ndarray, np.ndarray]]  # name -> (frames, sums, sums of squares)


def _check_set(
    where: str,
    arrays: Mapping[str, Callable[[], Any]],
    natoms: int,
    pbc: bool,
    type_map: tuple[str, ...] | None,
    properties: Mapping[str, int],
) -> _SetReport:
    """Check one ``set.*`` (a folder of .npy files or an hdf5 group): ``arrays`` maps each array's name
    (without ``.npy``) to a loader. ``properties``: declared property arrays and their values per frame;
    a dataset with properties need not have energies."""
    energy_needed = ("energy",) if not properties else ()
    for required in ("coord", *energy_needed, *(("box",) if pbc else ()), *properties):
        if required not in arrays:
            what = " (a declared property)" if required in properties else ""
            raise DatasetError(f"{where}/{required}.npy: missing{what}")
    labels = frozenset(n for n in ARRAYS if n in arrays)
    frames = _check_array(f"{where}/coord.npy", arrays["coord"](), "coord", natoms, None)
    real_types: frozenset[int] | None = None
    energy = np.empty(0)
    for label in sorted(labels - {"coord"}):
        array = arrays[label]()
        _check_array(f"{where}/{label}.npy", array, label, natoms, frames)
        if label == "real_atom_types":
            real_types = _real_types(f"{where}/real_atom_types.npy", array, type_map)
        elif label == "energy":
            energy = np.asarray(array).reshape(-1) / natoms
    stats = {}
    for name, dim in properties.items():
        array = arrays[name]()
        _check_array(f"{where}/{name}.npy", array, name, natoms, frames, ("frame", dim))
        values = np.asarray(array, dtype=np.float64).reshape(frames, dim)
        stats[name] = (frames, values.sum(axis=0), (values**2).sum(axis=0))
    others = frozenset(arrays) - frozenset(ARRAYS) - frozenset(properties)
    span = (float(energy.min()), float(energy.max())) if energy.size else None
    return _SetReport(frames, labels, others, real_types, span, stats)


def _system_info(
    where: str, types: np.ndarray, type_map: tuple[str, ...] | None, pbc: bool, sets: list[_SetReport]
) -> SystemInfo:
    used = set(types.tolist())
    real = [r.real_types for r in sets if r.real_types is not None]
    if real:
        used = set().union(*real)
    spans = [r.energy_per_atom for r in sets if r.energy_per_atom is not None]
    properties = []
    for name in sets[0].properties:
        parts = [r.properties[name] for r in sets]
        sums = np.sum([p[1] for p in parts], axis=0)
        squares = np.sum([p[2] for p in parts], axis=0)
        properties.append(
            (name, sum(p[0] for p in parts), tuple(map(float, sums)), tuple(map(float, squares)))
        )
    return SystemInfo(
        where, len(types), sum(r.frames for r in sets), tuple(sorted(used)), type_map, pbc,
        tuple(sorted(frozenset.intersection(*(r.labels for r in sets)))),
        (min(s[0] for s in spans), max(s[1] for s in spans)) if len(spans) == len(sets) else None,
        tuple(int(c) for c in np.bincount(types.astype(np.int64))),
        tuple(sorted(frozenset().union(*(r.others for r in sets)))),
        tuple(properties),
    )  # fmt: skip


def inspect_npy_system(path: Path, properties: Mapping[str, int] | None = None) -> SystemInfo:
    try:
        types = np.array([int(t) for t in _read_text(path / "type.raw").split()], dtype=np.int64)
    except ValueError:
        raise DatasetError(f"{path / 'type.raw'}: not a list of integers") from None
    if not types.size:
        raise DatasetError(f"{path / 'type.raw'}: empty")
    type_map = tuple(_read_text(path / "type_map.raw").split()) if (path / "type_map.raw").exists() else None
    _check_types(str(path / "type.raw"), types, type_map)
    pbc = not (path / "nopbc").exists()
    set_dirs = sorted(p for p in path.glob("set.*") if p.is_dir())
    if not set_dirs:
        raise DatasetError(f"{path}: no set.* directory (not deepmd/npy)")
    reports = [
        _check_set(
            str(d),
            {f.stem: partial(_load_npy, f) for f in d.glob("*.npy")},
            len(types),
            pbc,
            type_map,
            properties or {},
        )
        for d in set_dirs
    ]
    return _system_info(str(path), types, type_map, pbc, reports)


def inspect_hdf5(path: Path, properties: Mapping[str, int] | None = None) -> list[SystemInfo]:
    import h5py  # deferred: only deepmd/hdf5 users pay for it

    systems: list[SystemInfo] = []
    try:
        with h5py.File(path, "r") as h5:
            groups: list[str] = []
            h5.visit(lambda name: groups.append(name) if name.endswith("type.raw") else None)
            for name in sorted(groups):
                group = name[: -len("type.raw")].rstrip("/")
                node = h5[group] if group else h5
                where = f"{path}#/{group}"
                types = np.asarray(node["type.raw"]).reshape(-1)
                if not np.issubdtype(types.dtype, np.integer):
                    raise DatasetError(f"{where}/type.raw: not integers")
                type_map = (
                    tuple(
                        x.decode() if isinstance(x, bytes) else str(x)
                        for x in np.asarray(node["type_map.raw"])
                    )
                    if "type_map.raw" in node
                    else None
                )
                _check_types(f"{where}/type.raw", types, type_map)
                pbc = "nopbc" not in node
                keys = sorted(k for k in node if k.startswith("set."))
                if not keys:
                    raise DatasetError(f"{where}: no set.* group")
                reports = [
                    _check_set(
                        f"{where}/{key}",
                        {
                            k[: -len(".npy")]: partial(node[key].__getitem__, k)
                            for k in node[key]
                            if k.endswith(".npy")
                        },
                        len(types),
                        pbc,
                        type_map,
                        properties or {},
                    )  # fmt: skip
                    for key in keys
                ]
                systems.append(_system_info(where, types, type_map, pbc, reports))
    except OSError as exc:
        raise DatasetError(f"{path}: not a readable HDF5 file ({exc})") from None
    return systems


CHECK_THREADS = 4  # systems checked at once: numpy reduces and the kernel reads with the GIL released


def _each(check: Callable[[Path], SystemInfo], paths: list[Path]) -> list[SystemInfo]:
    """``check`` of every path, a few at once, in order; the first failure in path order is raised."""
    threads = min(CHECK_THREADS, os.cpu_count() or 1, len(paths))
    if threads <= 1:
        return [check(p) for p in paths]
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(threads, thread_name_prefix="lamflow-check") as pool:
        return list(pool.map(check, paths))


def inspect_dataset(
    path: str | Path,
    fmt: str = NPY,
    max_entries: int = MAX_ENTRIES,
    max_depth: int = MAX_DEPTH,
    properties: Mapping[str, int] | None = None,
) -> DatasetInfo:
    """Check a dataset; raises :class:`DatasetError` naming the first bad file. ``properties``: the
    property arrays it declares (name -> values per frame), checked like the labels."""
    path = Path(path)
    if fmt not in FORMATS:
        raise DatasetError(f"{path}: unknown format {fmt!r} (expected one of {', '.join(FORMATS)})")
    if not path.exists():
        raise DatasetError(f"{path}: does not exist")
    if fmt == NPY:
        if not path.is_dir():
            raise DatasetError(f"{path}: not a directory (deepmd/npy datasets are directories)")
        check = partial(inspect_npy_system, properties=properties)
        systems = _each(check, find_npy_systems(path, max_entries, max_depth))
    else:
        if not path.is_file():
            raise DatasetError(f"{path}: not a file (deepmd/hdf5 datasets are .h5/.hdf5 files)")
        systems = inspect_hdf5(path, properties)
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


def system_array(system_path: str | Path, name: str) -> np.ndarray | None:
    """One array of a deepmd/npy system, every set's frames in order (``<name>.npy``), as (nframes, -1);
    None when a set lacks it."""
    parts = []
    for set_dir in sorted(p for p in Path(system_path).glob("set.*") if p.is_dir()):
        file = set_dir / f"{name}.npy"
        if not file.is_file():
            return None
        array = np.load(file, mmap_mode="r", allow_pickle=False)
        parts.append(np.asarray(array).reshape(array.shape[0] if array.ndim else 1, -1))
    return np.concatenate(parts) if parts else None


def shortest_distance(coord: np.ndarray, box: np.ndarray | None) -> float:
    """The shortest distance between two atoms of one frame, Å (the nearest periodic image when ``box`` is
    given, as ASE's ``get_all_distances(mic=True)``); inf for one atom. An atom and its own image are not a
    pair (as in the MD's blow-up check)."""
    xyz = np.asarray(coord, dtype=float).reshape(-1, 3)
    if len(xyz) < 2:
        return math.inf
    cell = None if box is None else np.asarray(box, dtype=float).reshape(3, 3)
    shifts = np.array([(i, j, k) for i in (-1, 0, 1) for j in (-1, 0, 1) for k in (-1, 0, 1)], dtype=float)
    inverse = None if cell is None else np.linalg.inv(cell)
    best = math.inf
    for i in range(len(xyz) - 1):  # row by row: memory stays O(atoms)
        delta = xyz[i + 1 :] - xyz[i]
        if cell is not None and inverse is not None:
            frac = delta @ inverse
            frac -= np.round(frac)
            images = (frac[:, None, :] + shifts[None, :, :]) @ cell
            distance = np.sqrt((images**2).sum(-1)).min()
        else:
            distance = np.sqrt((delta**2).sum(-1)).min()
        best = min(best, float(distance))
    return best


def frame_digests(system_path: str) -> list[bytes]:
    """One digest per frame of a system, from its coordinates in single precision: the same frame has the
    same digest in any copy of it (a split part, a subset, another folder, stored as float32 or float64 —
    a float64 copy of float32 data, and float32 data cast from float64, give the same float32 values)."""
    import hashlib

    if "#" in system_path:
        import h5py

        file, _, group = system_path.partition("#")
        with h5py.File(file, "r") as h5:
            node = h5[group.strip("/")] if group.strip("/") else h5
            sets = sorted(k for k in node if k.startswith("set."))
            coord = np.concatenate(
                [np.asarray(node[k]["coord.npy"]).reshape(len(node[k]["coord.npy"]), -1) for k in sets]
            )
    else:
        found = system_array(system_path, "coord")
        if found is None:
            return []
        coord = found
    single = np.ascontiguousarray(np.asarray(coord).astype(np.float32))
    return [hashlib.blake2b(row.tobytes(), digest_size=16).digest() for row in single]


def most_neighbours(coord: np.ndarray, box: np.ndarray | None, rcut: float, centres: int = 256) -> int:
    """The largest number of atoms within ``rcut`` Å of one atom of a frame (every periodic image counted,
    as DeePMD-kit's neighbour list does), over at most ``centres`` atoms taken evenly through the frame."""
    xyz = np.asarray(coord, dtype=float).reshape(-1, 3)
    picked = xyz[np.linspace(0, len(xyz) - 1, min(centres, len(xyz))).round().astype(int)]
    if box is None:
        images = xyz[None, :, :]
    else:
        cell = np.asarray(box, dtype=float).reshape(3, 3)
        volume = abs(np.linalg.det(cell))
        spacing = [volume / np.linalg.norm(np.cross(cell[(i + 1) % 3], cell[(i + 2) % 3])) for i in range(3)]
        reach = [int(math.ceil(rcut / d)) for d in spacing]
        shifts = np.array(
            [(i, j, k) for i in range(-reach[0], reach[0] + 1) for j in range(-reach[1], reach[1] + 1)
             for k in range(-reach[2], reach[2] + 1)], dtype=float,
        ) @ cell  # fmt: skip
        images = xyz[None, :, :] + shifts[:, None, :]
    flat = images.reshape(-1, 3)
    # |a - b|^2 as |a|^2 + |b|^2 - 2 a.b: one matrix product (centres x atoms-and-images), not a 3-D array
    squared = (picked**2).sum(1)[:, None] + (flat**2).sum(1)[None, :] - 2.0 * (picked @ flat.T)
    within = (squared < rcut * rcut) & (squared > 1e-8)
    return int(within.sum(axis=1).max())
