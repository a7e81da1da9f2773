"""Molecular dynamics with ASE on a DeePMD-kit model (exploration and stability runs), and what they share:
start structures read with dpdata, dumped trajectories read back, the checks that say a frame is
unphysical, and the energy drift.

Units are ASE's (eV, Å, fs via ``ase.units.fs``); temperatures in K, pressures in bar.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np

Ensemble = Literal["nvt", "npt", "nve"]


def read_frame(system: str | Path, frame: int) -> Any:
    """Frame ``frame`` of a deepmd/npy system as ``ase.Atoms`` (periodic unless the system is ``nopbc``)."""
    import dpdata

    data = dpdata.System(str(system), fmt="deepmd/npy")
    if not 0 <= frame < data.get_nframes():
        raise IndexError(f"{system}: no frame {frame} (the system has {data.get_nframes()})")
    return data.sub_system([frame]).to("ase/structure")[0]


def read_trajectory(path: Path) -> list[Any]:
    """Every frame of an extended-XYZ file as ``ase.Atoms`` (an empty file, as a branch that blew up and
    dropped its frames leaves, is no frames)."""
    from ase.io import read

    return list(read(path, index=":", format="extxyz")) if path.stat().st_size else []


def perturbed(atoms: Any, copies: int, cell_fraction: float, atom_distance: float, seed: int) -> list[Any]:
    """``copies`` randomly perturbed versions of ``atoms`` (dpdata's ``perturb``: cell strain up to
    ``cell_fraction``, atom displacements of ``atom_distance`` Å, normal style); non-periodic structures keep
    their (absent) cell."""
    import dpdata

    system = dpdata.System(atoms, fmt="ase/structure")
    state = np.random.get_state()
    np.random.seed(seed)  # dpdata's perturb draws from numpy's global generator
    try:
        out = system.perturb(
            pert_num=copies,
            cell_pert_fraction=cell_fraction if all(atoms.pbc) else 0.0,
            atom_pert_distance=atom_distance,
            atom_pert_style="normal",
        )
    finally:
        np.random.set_state(state)
    result = out.to("ase/structure")
    for item in result:
        item.pbc = atoms.pbc
    return result


def min_distance(atoms: Any) -> float:
    """The shortest interatomic distance (minimum image when periodic); inf for one atom."""
    if len(atoms) < 2:
        return math.inf
    d = atoms.get_all_distances(mic=bool(any(atoms.pbc)))
    np.fill_diagonal(d, np.inf)
    return float(d.min())


def frame_problem(atoms: Any, energy: float, forces: np.ndarray, min_dist: float) -> str | None:
    """Why a frame is unphysical (non-finite energy/forces, atoms closer than ``min_dist`` Å), or None."""
    if not math.isfinite(energy):
        return "non-finite energy"
    if not np.all(np.isfinite(forces)):
        return "non-finite forces"
    closest = min_distance(atoms)
    if closest < min_dist:
        return f"atoms {closest:.3f} Å apart (< {min_dist} Å)"
    return None


@dataclass
class MdResult:
    frames: list[Any] = field(default_factory=list)  # dumped frames with energy/forces/(stress) attached
    steps_done: int = 0
    seconds: float = 0.0
    exploded_at: int | None = None  # the MD step where a frame first failed the checks
    reason: str | None = None
    total_energy: list[tuple[float, float]] = field(default_factory=list)  # (time ps, eV/atom) per dump

    @property
    def steps_per_s(self) -> float:
        return self.steps_done / self.seconds if self.seconds > 0 else 0.0


def _dynamics(atoms: Any, ensemble: Ensemble, timestep_fs: float, temperature: float, **kw: Any) -> Any:
    from ase import units

    dt = timestep_fs * units.fs
    if ensemble == "nve":
        from ase.md.verlet import VelocityVerlet

        return VelocityVerlet(atoms, timestep=dt)
    if ensemble == "nvt":
        from ase.md.langevin import Langevin

        return Langevin(
            atoms,
            timestep=dt,
            temperature_K=temperature,
            friction=kw["friction"] / units.fs,
            fixcm=False,
            rng=kw["rng"],
        )
    from ase.md.nptberendsen import NPTBerendsen

    return NPTBerendsen(
        atoms,
        timestep=dt,
        temperature_K=temperature,
        pressure_au=kw["pressure_bar"] * units.bar,
        taut=100 * units.fs,
        taup=1000 * units.fs,
        compressibility_au=4.57e-5 / units.bar,
    )


def run_md(
    atoms: Any,
    calculator: Any,
    *,
    ensemble: Ensemble,
    temperature: float,
    steps: int,
    timestep_fs: float,
    dump_every: int,
    min_dist: float,
    seed: int,
    friction: float = 0.01,
    pressure_bar: float = 1.0,
    on_dump: Callable[[int], None] | None = None,
) -> MdResult:
    """Run ``steps`` MD steps from ``atoms`` (velocities drawn at ``temperature``), keeping every
    ``dump_every``-th frame (step 0 included). Stops at the first dumped frame that fails
    :func:`frame_problem`, or when the calculator raises; the result says where and why."""
    from ase.calculators.singlepoint import SinglePointCalculator
    from ase.constraints import FixCom
    from ase.md.velocitydistribution import Stationary, thermalize_momenta

    atoms = atoms.copy()
    atoms.calc = calculator
    rng = np.random.default_rng(seed)
    thermalize_momenta(atoms, temperature, rng=rng)
    Stationary(atoms)
    if ensemble == "nvt":
        atoms.set_constraint(FixCom())  # what Langevin's deprecated fixcm did
    dyn = _dynamics(atoms, ensemble, timestep_fs, temperature, friction=friction, rng=rng,
                    pressure_bar=pressure_bar)  # fmt: skip
    result = MdResult()
    natoms = len(atoms)

    def dump(step: int) -> bool:
        energy = float(atoms.get_potential_energy())
        forces = np.asarray(atoms.get_forces(apply_constraint=False))  # the model's, not FixCom's
        problem = frame_problem(atoms, energy, forces, min_dist)
        if problem is not None:
            result.exploded_at, result.reason = step, problem
            return False
        kinetic = float(atoms.get_kinetic_energy())
        result.total_energy.append((step * timestep_fs / 1000.0, (energy + kinetic) / natoms))
        frame = atoms.copy()
        frame.set_constraint()
        results: dict[str, Any] = {"energy": energy, "forces": forces.copy()}
        if all(atoms.pbc):
            results["stress"] = np.asarray(atoms.get_stress(voigt=False)).copy()
        frame.calc = SinglePointCalculator(frame, **results)
        frame.info["md_step"] = step
        result.frames.append(frame)
        if on_dump is not None:
            on_dump(step)
        return True

    started = time.perf_counter()
    try:
        if dump(0):
            done = 0
            while done < steps:
                chunk = min(dump_every, steps - done)
                dyn.run(chunk)
                done += chunk
                result.steps_done = done
                if done % dump_every == 0 and not dump(done):
                    break
    except Exception as exc:  # the calculator failed on an exploded structure (neighbour overflow, ...)
        result.exploded_at = result.steps_done
        result.reason = f"{type(exc).__name__}: {exc}".splitlines()[0]
    result.seconds = time.perf_counter() - started
    return result


def energy_drift(points: list[tuple[float, float]]) -> float:
    """Slope of total energy per atom against time (eV/atom/ps), by least squares."""
    if len(points) < 2:
        raise ValueError("an energy drift needs at least two points")
    t, e = np.asarray(points, dtype=float).T
    return float(np.polyfit(t, e, 1)[0])
