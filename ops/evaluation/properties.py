"""A property model's test: what ``dp --pt test`` reports for a property fitting net, read per component,
and the dummy model a property's errors are put next to.

DeePMD-kit 3.2 (``deepmd/infer/model_test/property.py``) prints ``PROPERTY MAE`` / ``PROPERTY RMSE``
pooled over every component, and writes one detail file per tested frame:
``<prefix>.property.out[.<system index>].<frame>``, headed ``# <system> - <frame>: data_property
pred_property``, one row per component (label, prediction). The errors per component come from those
files. The dummy model predicts the mean of the training frames' property, component by component: an
error at or above its error means the model learned nothing about the property. Normalised errors are
built as for energies (:mod:`lamflow.ops.evaluation.baseline`): ``ratio_property_<i>`` = RMSE / dummy
RMSE of component i, ``normalized_property`` = the mean over components of min(ratio, 1).
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterator
from pathlib import Path

import numpy as np

_METRIC_LINE = re.compile(r"PROPERTY\s+(MAE|RMSE)\s*:\s*([-+0-9.eE]+|nan)")
DETAIL_GLOB = "{prefix}.property.out.*"


def parse_property_metrics(log_text: str) -> dict[str, float]:
    """``property_mae`` and ``property_rmse`` (pooled over components) from the "weighted average of
    errors" block of a ``dp test`` log; ValueError when the block or the lines are absent."""
    marker = log_text.rfind("weighted average of errors")
    if marker < 0:
        raise ValueError("no 'weighted average of errors' block in dp test output")
    metrics = {
        f"property_{kind.lower()}": float(value) for kind, value in _METRIC_LINE.findall(log_text[marker:])
    }
    if "property_rmse" not in metrics:
        raise ValueError("dp test printed no PROPERTY errors: is the model a property model?")
    return metrics


def read_property_detail(detail_dir: Path, prefix: str) -> dict[str, np.ndarray]:
    """{system path: (frames, 2, dim) array of [label, prediction] per component} from DeePMD-kit's
    per-frame detail files, systems and frames in order."""
    frames: dict[str, dict[int, np.ndarray]] = {}
    for path in detail_dir.glob(DETAIL_GLOB.format(prefix=prefix)):
        with path.open() as handle:
            header = handle.readline().lstrip("#").strip()
            rows = np.loadtxt(handle, ndmin=2)
        where = header.rsplit(":", 1)[0] if ":" in header else header
        system, _, frame = where.rpartition(" - ")
        if not system or not frame.strip().isdigit() or rows.shape[1] != 2:
            raise ValueError(f"{path.name}: not a DeePMD-kit property detail file (header {header!r})")
        frames.setdefault(system.strip(), {})[int(frame)] = rows.T
    return {s: np.stack([frames[s][f] for f in sorted(frames[s])]) for s in sorted(frames)}


def component_errors(detail: dict[str, np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """(labels, predictions), each (frames, dim), over every system."""
    stacked = np.concatenate(list(detail.values()))
    return stacked[:, 0, :], stacked[:, 1, :]


def _property_arrays(system: Path, name: str) -> Iterator[np.ndarray]:
    """Every set's ``<name>.npy`` of a deepmd/npy system, or of every system in a deepmd/hdf5 file."""
    if system.is_file():
        import h5py

        with h5py.File(system, "r") as h5:
            groups: list[str] = []
            h5.visit(
                lambda n: groups.append(n[: -len("type.raw")].rstrip("/")) if n.endswith("type.raw") else None
            )
            for group in sorted(groups):
                node = h5[group] if group else h5
                for key in sorted(k for k in node if k.startswith("set.")):
                    if f"{name}.npy" not in node[key]:
                        raise ValueError(
                            f"{system}#/{group}/{key}/{name}.npy: missing; the dummy is fitted on it"
                        )
                    yield np.asarray(node[key][f"{name}.npy"])
        return
    for set_dir in sorted(system.glob("set.*")):
        if not (set_dir / f"{name}.npy").is_file():
            raise ValueError(f"{set_dir / name}.npy: missing; the dummy model is fitted on it")
        yield np.load(set_dir / f"{name}.npy", allow_pickle=False)


def train_mean(systems: list[Path], name: str, dim: int) -> np.ndarray:
    """The mean of property ``name`` over every frame of the (training) systems: the dummy prediction."""
    values = [array.reshape(-1, dim) for system in systems for array in _property_arrays(system, name)]
    if not values:
        raise ValueError(f"no {name}.npy in the dummy model's training systems")
    return np.concatenate(values).mean(axis=0)


def property_metrics(labels: np.ndarray, predictions: np.ndarray, dummy: np.ndarray) -> dict[str, float]:
    """Errors per component and pooled, the dummy model's, and the normalised errors (see the module)."""
    out: dict[str, float] = {"frames": float(len(labels))}
    error, dummy_error = predictions - labels, dummy[None, :] - labels
    ratios = []
    for i in range(labels.shape[1]):
        out[f"property_mae_{i}"] = float(np.mean(np.abs(error[:, i])))
        out[f"property_rmse_{i}"] = float(np.sqrt(np.mean(error[:, i] ** 2)))
        out[f"dummy_property_rmse_{i}"] = float(np.sqrt(np.mean(dummy_error[:, i] ** 2)))
        if out[f"dummy_property_rmse_{i}"] > 0 and math.isfinite(out[f"property_rmse_{i}"]):
            out[f"ratio_property_{i}"] = out[f"property_rmse_{i}"] / out[f"dummy_property_rmse_{i}"]
            ratios.append(out[f"ratio_property_{i}"])
    out["dummy_property_mae"] = float(np.mean(np.abs(dummy_error)))
    out["dummy_property_rmse"] = float(np.sqrt(np.mean(dummy_error**2)))
    if len(ratios) == labels.shape[1]:
        out["ratio_property"] = float(np.mean(ratios))
        out["normalized_property"] = float(np.mean([min(r, 1.0) for r in ratios]))
        out["normalized_error"] = out["normalized_property"]  # what the generalizability table averages
    return out
