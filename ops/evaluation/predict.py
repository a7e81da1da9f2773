"""In-process evaluation of frozen models on labelled frames (drift check, distillation report): reading
deepmd/npy systems with dpdata, batched predictions through :func:`lamflow.ops.dp.deep_potential`, errors
and timings. Energies per atom in eV/atom, forces in eV/Å, virials per atom in eV/atom."""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np


@dataclass(frozen=True)
class SystemFrames:
    """The frames of one system, types as element names (mapped onto each model's type map)."""

    path: str
    symbols: tuple[str, ...]
    coords: np.ndarray  # (nf, natoms*3)
    cells: np.ndarray | None  # (nf, 9); None without PBC
    energy: np.ndarray | None  # (nf,)
    force: np.ndarray | None  # (nf, natoms*3)
    virial: np.ndarray | None  # (nf, 9)

    @property
    def natoms(self) -> int:
        return len(self.symbols)

    @property
    def nframes(self) -> int:
        return len(self.coords)


def load_systems(paths: list[str], frames: int = 0) -> list[SystemFrames]:
    """deepmd/npy systems (their first ``frames`` frames; 0 = all)."""
    import dpdata

    out = []
    for path in paths:
        data = dpdata.LabeledSystem(path, fmt="deepmd/npy")
        n = data.get_nframes() if frames <= 0 else min(frames, data.get_nframes())
        nopbc = bool(data.nopbc)
        symbols = tuple(data["atom_names"][t] for t in data["atom_types"])
        virial = data.data.get("virials")
        out.append(
            SystemFrames(
                path=path,
                symbols=symbols,
                coords=data["coords"][:n].reshape(n, -1),
                cells=None if nopbc else data["cells"][:n].reshape(n, 9),
                energy=data["energies"][:n].reshape(n) if "energies" in data.data else None,
                force=data["forces"][:n].reshape(n, -1) if "forces" in data.data else None,
                virial=None if virial is None else np.asarray(virial)[:n].reshape(n, 9),
            )
        )
    return out


def atom_types(model: Any, symbols: tuple[str, ...]) -> np.ndarray:
    type_map = list(model.get_type_map())
    missing = sorted(set(symbols) - set(type_map))
    if missing:
        raise ValueError(f"the model's type map {type_map} lacks {', '.join(missing)}")
    return np.array([type_map.index(s) for s in symbols], dtype=int)


@dataclass(frozen=True)
class Prediction:
    energy: np.ndarray  # (nf,) eV
    force: np.ndarray  # (nf, natoms*3)
    virial: np.ndarray | None  # (nf, 9)


def predict(model: Any, system: SystemFrames) -> Prediction:
    e, f, v = model.eval(system.coords, system.cells, atom_types(model, system.symbols))[:3]
    n = system.nframes
    return Prediction(
        energy=np.asarray(e).reshape(n),
        force=np.asarray(f).reshape(n, -1),
        virial=None if system.cells is None else np.asarray(v).reshape(n, 9),
    )


def _rmse(parts: list[np.ndarray]) -> float:
    values = np.concatenate([p.reshape(-1) for p in parts]) if parts else np.array([])
    return float(np.sqrt(np.mean(values**2))) if values.size else float("nan")


def errors(
    systems: list[SystemFrames], predicted: list[Prediction], reference: list[Prediction] | None = None
) -> dict[str, float]:
    """RMSEs of ``predicted`` against the systems' labels (``reference`` None) or another model's
    predictions: energy_rmse_per_atom, force_rmse, virial_rmse_per_atom (when both sides have virials)."""
    de, df, dv = [], [], []
    refs: list[Prediction | None] = list(reference) if reference is not None else [None] * len(systems)
    for system, pred, ref in zip(systems, predicted, refs, strict=True):
        ref_e = ref.energy if ref is not None else system.energy
        ref_f = ref.force if ref is not None else system.force
        ref_v = ref.virial if ref is not None else system.virial
        if ref_e is not None:
            de.append((pred.energy - ref_e) / system.natoms)
        if ref_f is not None:
            df.append(pred.force - ref_f)
        if ref_v is not None and pred.virial is not None:
            dv.append((pred.virial - ref_v) / system.natoms)
    out = {"energy_rmse_per_atom": _rmse(de), "force_rmse": _rmse(df)}
    if dv:
        out["virial_rmse_per_atom"] = _rmse(dv)
    return {k: v for k, v in out.items() if v == v}  # drop NaN (no such labels)


def time_per_atom(model: Any, systems: list[SystemFrames], repeats: int, warmup: int) -> float:
    """Mean wall time of one single-frame evaluation, per atom, in µs; ``warmup`` passes over the frames
    are run first and not timed."""
    calls = [
        (
            s.coords[i : i + 1],
            None if s.cells is None else s.cells[i : i + 1],
            atom_types(model, s.symbols),
            s.natoms,
        )
        for s in systems
        for i in range(s.nframes)
    ]
    for _ in range(warmup):
        for coords, cells, types, _n in calls:
            model.eval(coords, cells, types)
    atoms = 0
    started = time.perf_counter()
    for _ in range(repeats):
        for coords, cells, types, n in calls:
            model.eval(coords, cells, types)
            atoms += n
    return (time.perf_counter() - started) / atoms * 1e6


def system_paths(root: Path) -> list[str]:
    from lamflow.ops.data.datasets import find_npy_systems

    return [str(p) for p in find_npy_systems(root)]
