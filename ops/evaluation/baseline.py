"""The dummy model every error is put next to: energy from the chemical formula alone (per-element
energies fitted by least squares on training frames), zero forces and virials. A model's normalised error
is min(RMSE / dummy RMSE, 1) per quantity, combined with fixed weights — energy and force 0.5 each, or
0.45/0.45/0.1 with virials — as LAMBench defines its generalizability metric: 1 means "no better than
knowing nothing", 0 is perfect. The cap hides how much worse than the dummy a model is, so the uncapped
ratio is kept beside it (``ratio_<quantity>``), and ``worse_than_dummy`` names the quantities above 1."""

from __future__ import annotations

import math

import numpy as np

from lamflow.ops.evaluation.predict import SystemFrames

WEIGHTS = {"energy": 0.5, "force": 0.5}
WEIGHTS_WITH_VIRIAL = {"energy": 0.45, "force": 0.45, "virial": 0.1}


def _composition(systems: list[SystemFrames], elements: list[str]) -> tuple[np.ndarray, np.ndarray]:
    """(atoms of each element per frame, energy per frame) over every frame that has an energy."""
    rows, energies = [], []
    for s in systems:
        if s.energy is None:
            continue
        counts = [s.symbols.count(e) for e in elements]
        rows += [counts] * s.nframes
        energies.append(s.energy)
    return np.asarray(rows, dtype=float).reshape(-1, len(elements)), (
        np.concatenate(energies) if energies else np.zeros(0)
    )


def element_energies(fit: list[SystemFrames]) -> dict[str, float]:
    """Per-element energies (eV) that best reproduce the fit frames' energies from their formulas."""
    elements = sorted({e for s in fit for e in s.symbols})
    counts, energies = _composition(fit, elements)
    if not len(energies):
        raise ValueError("no energies to fit the per-element energies on")
    solution = np.linalg.lstsq(counts, energies, rcond=None)[0]
    return dict(zip(elements, (float(x) for x in solution), strict=True))


def dummy_errors(test: list[SystemFrames], fit: list[SystemFrames]) -> dict[str, float]:
    """RMSEs of the dummy model on ``test``: energy per atom (eV/atom), force (eV/Å), virial per atom."""
    mu = element_energies(fit)
    de, forces, virials = [], [], []
    for s in test:
        if s.energy is not None:
            predicted = sum(mu.get(e, 0.0) for e in s.symbols)  # an element the fit never saw: 0
            de.append((s.energy - predicted) / s.natoms)
        if s.force is not None:
            forces.append(s.force.reshape(-1))
        if s.virial is not None:
            virials.append((s.virial / s.natoms).reshape(-1))
    out = {}
    for key, parts in (("dummy_energy_rmse_per_atom", de), ("dummy_force_rmse", forces),
                       ("dummy_virial_rmse_per_atom", virials)):  # fmt: skip
        if parts:
            values = np.concatenate([np.asarray(p).reshape(-1) for p in parts])
            out[key] = float(np.sqrt(np.mean(values**2)))
    return out


def normalized(metrics: dict[str, float], dummy: dict[str, float]) -> dict[str, float]:
    """``ratio_<quantity>`` = RMSE / dummy RMSE (uncapped), ``normalized_<quantity>`` = min(ratio, 1) and
    their weighted sum ``normalized_error``."""
    pairs = {
        "energy": ("energy_rmse_per_atom", "dummy_energy_rmse_per_atom"),
        "force": ("force_rmse", "dummy_force_rmse"),
        "virial": ("virial_rmse_per_atom", "dummy_virial_rmse_per_atom"),
    }
    out: dict[str, float] = {}
    for quantity, (mine, theirs) in pairs.items():
        if mine in metrics and dummy.get(theirs, 0) > 0 and math.isfinite(metrics[mine]):
            out[f"ratio_{quantity}"] = metrics[mine] / dummy[theirs]  # uncapped: > 1 is worse than the dummy
            out[f"normalized_{quantity}"] = min(out[f"ratio_{quantity}"], 1.0)
    weights = WEIGHTS_WITH_VIRIAL if "normalized_virial" in out else WEIGHTS
    if all(f"normalized_{q}" in out for q in weights):
        out["normalized_error"] = sum(w * out[f"normalized_{q}"] for q, w in weights.items())
    return out


def log_average(values: list[float]) -> float:
    """exp(mean(log x)): how normalised errors are aggregated over datasets."""
    if not values or min(values) <= 0:
        raise ValueError("a log-average needs positive values")
    return float(math.exp(sum(math.log(v) for v in values) / len(values)))


def worse_than_dummy(metrics: dict[str, float]) -> list[str]:
    """The quantities (energy, force, virial; property[i] for component i of a property) whose RMSE is
    above the dummy model's."""
    out = [q for q in ("energy", "force", "virial") if metrics.get(f"ratio_{q}", 0.0) > 1.0]
    components = sorted(int(k.rpartition("_")[2]) for k in metrics if k.startswith("ratio_property_"))
    return out + [f"property[{i}]" for i in components if metrics[f"ratio_property_{i}"] > 1.0]
