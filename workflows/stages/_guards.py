"""Scientific guards shared by the stages that evaluate models (checked at validate time).

- Overlap: a test (or bias re-fit) dataset must not share frames with the data the model was trained on:
  the same dataset, the same folder under two names, one folder inside the other, or the same frames
  anywhere (per-frame coordinate digests: a split part, a subset or a copy of a dataset holds frames of it
  under another folder).
- Bias re-fit: ``dp change-bias -m change`` fits per-element energies by least squares on the re-fit
  data's compositions. The result is determined for a test composition only if that composition (over the
  elements the re-fit data contain) lies in the span of the re-fit compositions; elements absent from the
  re-fit data keep the pretrained bias (DeePMD-kit changes only the types it sees).
"""

from __future__ import annotations

from collections.abc import Mapping
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np

from lamflow.ops.data.datasets import (
    DatasetInfo,
    SystemInfo,
    frame_digests,
    most_neighbours,
    shortest_distance,
    system_array,
)
from lamflow.workflows import check_cache
from lamflow.workflows.compile.deepmd_input import PROPERTY_LOSS


class Datasets:
    """Read-only view of the inspected datasets for the guards (paths, systems, compositions, digests)."""

    def __init__(
        self,
        paths: Mapping[str, Path],
        infos: Mapping[str, DatasetInfo],
        type_maps: Mapping[str, list[str] | None],
    ) -> None:
        self.paths = paths
        self.infos = infos
        self.type_maps = type_maps
        self._digests: dict[str, set[bytes]] = {}
        self._resolved: dict[str, Path] = {}
        self._systems: dict[str, set[str]] = {}

    def _path(self, name: str) -> Path:
        if name not in self._resolved:
            self._resolved[name] = self.paths[name].resolve()
        return self._resolved[name]

    def _system_paths(self, name: str) -> set[str]:
        if name not in self._systems:
            self._systems[name] = {str(Path(s.path).resolve()) for s in self.infos[name].systems}
        return self._systems[name]

    def digests(self, name: str) -> set[bytes]:
        """The per-frame coordinate digests of every frame of the dataset."""
        if name not in self._digests:
            self._digests[name] = {
                d
                for s in self.infos[name].systems
                for d in cached_frame_digests(s.path, coordinates_stamp(s.path))
            }
        return self._digests[name]

    def overlap(self, a: str, b: str) -> str | None:
        """Why datasets ``a`` and ``b`` share frames, or None."""
        if a == b:
            return "the same dataset"
        pa, pb = self._path(a), self._path(b)
        if pa == pb:
            return f"the same folder {pa}"
        if pa in pb.parents or pb in pa.parents:
            return f"{pa} and {pb}: one contains the other"
        shared = self._system_paths(a) & self._system_paths(b)
        if shared:
            return f"both hold the system {sorted(shared)[0]}"
        shared_frames = len(self.digests(a) & self.digests(b))
        if shared_frames:
            return (
                f"{shared_frames} of its {len(self.digests(a))} distinct frames are frames of {b!r} "
                "(the same coordinates)"
            )
        return None

    def labels(self, name: str) -> set[str]:
        """Label arrays (energy, force, virial ...) held by at least one system of the dataset."""
        return {a for s in self.infos[name].systems for a in s.arrays}

    def compositions(self, name: str) -> list[dict[str, int]]:
        """One element -> atom count mapping per system."""
        out = []
        override = self.type_maps.get(name)
        for system in self.infos[name].systems:
            names = tuple(override) if override is not None else system.type_map
            if names is None:
                continue
            out.append({names[t]: c for t, c in enumerate(system.type_counts) if c})
        return out

    def elements(self, name: str) -> set[str]:
        """Every element with atoms in the dataset's systems."""
        return {e for c in self.compositions(name) for e in c}


def undetermined_elements(refit: list[dict[str, int]], test: list[dict[str, int]]) -> list[str]:
    """Elements whose re-fitted energies the ``refit`` compositions leave undetermined for ``test``
    compositions (empty when every test composition is in the span of the re-fit ones)."""
    elements = sorted({e for c in refit for e in c})
    if not elements:
        return []
    a = np.array([[c.get(e, 0) for e in elements] for c in refit], dtype=float)
    _, sv, vt = np.linalg.svd(a)
    rank = int((sv > 1e-8 * max(sv.max(), 1.0)).sum())
    null = vt[rank:]  # directions of per-element energies the re-fit data do not see
    if null.size == 0:
        return []
    undetermined: set[str] = set()
    for comp in test:
        vector = np.array([comp.get(e, 0) for e in elements], dtype=float)
        seen = null @ vector
        if np.abs(seen).max() > 1e-8 * max(np.abs(vector).max(), 1.0):
            for row, weight in zip(null, seen, strict=True):
                if abs(weight) > 1e-8:
                    undetermined |= {elements[i] for i in np.flatnonzero(np.abs(row) > 1e-8)}
    return sorted(undetermined)


def energy_loss_problem(training: Any, prop: str) -> str | None:
    """Why a property fit's training settings ask for something that does not apply: energy-loss
    prefactors (DeePMD-kit's property loss has none); None when they do not."""
    if any(v is not None for v in training.loss.model_dump().values()):
        return (
            f"energy-loss prefactors do not apply to a property fit (DeePMD-kit's property loss: "
            f"{PROPERTY_LOSS['loss_func']} on {prop}); leave loss out"
        )
    return None


def metric_problem(metric: str, maximum: float | None, labels: set[str], dataset: str) -> str | None:
    """Why a gate on ``metric`` (at most ``maximum``) over a dataset with ``labels`` could never fire or
    never pass, or None."""
    for quantity in ("virial", "force"):
        if quantity in metric and quantity not in labels:
            return (
                f"{metric} needs {quantity} labels, and no system of {dataset!r} has {quantity}.npy: the "
                "gate could never be measured"
            )
    if maximum is not None and metric.startswith("normalized_") and maximum >= 1:
        return (
            f"max {maximum:g}: {metric} is capped at 1 (the dummy model's error), so the gate could never "
            "fail; give a max below 1"
        )
    return None


def closest_start(system: SystemInfo, frames: list[int]) -> tuple[float, int] | None:
    """(shortest interatomic distance, frame) over the given frames of a deepmd/npy system; None when its
    coordinates cannot be read here (an hdf5 system)."""
    arrays = _coordinates(system.path, system.pbc)
    if arrays is None:
        return None
    coord, box = arrays
    return min((shortest_distance(coord[f], None if box is None else box[f]), f) for f in frames)


def _coordinates(system: str, pbc: bool) -> tuple[np.ndarray, np.ndarray | None] | None:
    """(coordinates, cells or None) of every frame of a deepmd/npy system; None for an hdf5 system or one
    without coordinates."""
    if "#" in system:
        return None
    coord = system_array(system, "coord")
    if coord is None:
        return None
    return coord, system_array(system, "box") if pbc else None


SEL_FRAMES = 16  # frames per system looked at for the neighbour count (evenly spaced)
SEL_MAX_ATOMS = 5000  # larger systems are not counted here (DeePMD-kit still warns in the step's log)


def _selections(descriptor: dict[str, Any]) -> list[tuple[str, float, int]]:
    """(YAML path under model.descriptor, rcut, neighbours kept) of each neighbour list of a descriptor
    that keeps one number of neighbours for all types (DPA-1/2/3, se_atten); per-type lists are skipped."""
    kind = str(descriptor.get("type", "")).lower()
    blocks: list[tuple[str, dict[str, Any], str, str]] = []
    if kind == "dpa2":
        blocks = [("repinit", descriptor.get("repinit", {}), "rcut", "nsel"),
                  ("repformer", descriptor.get("repformer", {}), "rcut", "nsel")]  # fmt: skip
    elif kind == "dpa3":
        repflow = descriptor.get("repflow", {})
        blocks = [("repflow", repflow, "e_rcut", "e_sel"), ("repflow", repflow, "a_rcut", "a_sel")]
    elif kind in ("dpa1", "se_atten", "se_atten_v2"):
        blocks = [("", descriptor, "rcut", "sel")]
    out = []
    for prefix, block, rcut, sel in blocks:
        if isinstance(block.get(rcut), int | float) and isinstance(block.get(sel), int):
            path = f"{prefix}.{sel}" if prefix else sel
            out.append((path, float(block[rcut]), int(block[sel])))
    return out


def sel_shortfalls(descriptor: dict[str, Any] | None, data: Datasets, names: list[str]) -> list[str]:
    """What each neighbour list of ``descriptor`` drops on the datasets ``names``: 'repinit.nsel 100, the
    data need 106 within 6 Å' (DeePMD-kit keeps the nearest and drops the rest, and warns only in the
    training log)."""
    if descriptor is None:
        return []
    selections = _selections(descriptor)
    if not selections:
        return []
    need = dict.fromkeys(range(len(selections)), 0)
    for name in names:
        for system in data.infos[name].systems:
            if "#" in system.path or system.natoms > SEL_MAX_ATOMS:
                continue
            for n, (_, rcut, _) in enumerate(selections):
                found = system_neighbours(system.path, system.pbc, rcut, coordinates_stamp(system.path))
                need[n] = max(need[n], found)
    return [
        f"{path} {kept}, the data need {need[n]} within {rcut:g} Å"
        for n, (path, rcut, kept) in enumerate(selections)
        if need[n] > kept
    ]


def coordinates_stamp(system: str) -> tuple[tuple[str, int, int], ...]:
    """(file, size, mtime) of a system's coordinate and cell files (an hdf5 system's: its file): what the
    guards' caches key on (a changed file is read again)."""
    if "#" in system:
        info = Path(system.partition("#")[0]).stat()
        return ((system, info.st_size, info.st_mtime_ns),)
    stamp = []
    for path in sorted(Path(system).glob("set.*/*.npy")):
        if path.name in ("coord.npy", "box.npy"):
            info = path.stat()
            stamp.append((str(path), info.st_size, info.st_mtime_ns))
    return tuple(stamp)


@lru_cache(maxsize=4096)
def system_neighbours(system: str, pbc: bool, rcut: float, stamp: tuple[tuple[str, int, int], ...]) -> int:
    """The most neighbours within ``rcut`` of one atom over SEL_FRAMES evenly spaced frames of a system
    (remembered per process and on disk, by the files' sizes and times: validate runs this for every
    training dataset, every time)."""
    key = {"stamp": stamp, "pbc": pbc, "rcut": rcut, "frames": SEL_FRAMES, "v": 1}
    known = check_cache.recall("neighbours", key)
    if isinstance(known, int):
        return known
    arrays = _coordinates(system, pbc)
    if arrays is None:
        return 0
    coord, box = arrays
    frames = sorted({int(i) for i in np.linspace(0, len(coord) - 1, min(SEL_FRAMES, len(coord)))})
    most = max(most_neighbours(coord[f], None if box is None else box[f], rcut) for f in frames)
    check_cache.remember("neighbours", key, most)
    return most


@lru_cache(maxsize=4096)
def cached_frame_digests(system: str, stamp: tuple[tuple[str, int, int], ...]) -> frozenset[bytes]:
    return frozenset(frame_digests(system))
