"""Helpers shared by the step ops: work directories, dataset system lists, DeePMD-kit outputs."""

from __future__ import annotations

import copy
import json
import math
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Dict

from dflow.python import Artifact, FatalError

from lamflow.ops import files
from lamflow.ops.data import systems_for_dp
from lamflow.ops.dp import DpError, run_dp

# Inputs of every step that reads datasets: {name: {format, type_map}} and the staged datasets themselves.
DATASET_INPUTS = {"dataset_formats": dict, "datasets": Artifact(Dict[str, Path])}


def run_dp_step(argv: list[str], cwd: Path, log_file: str) -> None:
    """:func:`run_dp` for a step: a failing ``dp`` becomes dflow's FatalError (the step fails, no retry)."""
    try:
        run_dp(argv, cwd=cwd, log_file=log_file)
    except DpError as exc:
        raise FatalError(str(exc)) from exc


def work_dir(name: str = files.WORK_DIR) -> Path:
    """A fresh directory under the step's current directory, returned as an absolute path."""
    path = Path(name).resolve()
    path.mkdir(parents=True, exist_ok=True)
    return path


def dataset_systems(
    names: list[str],
    datasets: Mapping[str, Path],
    dataset_formats: Mapping[str, Mapping[str, Any]],
    scratch: Path,
) -> list[str]:
    """``dp`` system paths for the named datasets, in order."""
    systems: list[str] = []
    for name in names:
        if name not in datasets:
            raise KeyError(
                f"dataset {name!r} was not staged for this step (have: {', '.join(sorted(datasets))})"
            )
        fmt = dataset_formats[name]
        systems += systems_for_dp(datasets[name], fmt["format"], fmt.get("type_map"), scratch / name)
    return systems


def dataset_root(
    name: str, datasets: Mapping[str, Path], dataset_formats: Mapping[str, Mapping[str, Any]], scratch: Path
) -> str:
    """One path that ``dp test -s`` / ``dp change-bias -s`` can search for the dataset's systems."""
    fmt = dataset_formats[name]
    if fmt.get("type_map") is None:
        return str(datasets[name])
    dataset_systems([name], datasets, dataset_formats, scratch)
    return str(scratch / name)


def fill_systems(
    deepmd_input: Mapping[str, Any],
    head_datasets: Mapping[str, Mapping[str, list[str]]],
    datasets: Mapping[str, Path],
    dataset_formats: Mapping[str, Mapping[str, Any]],
    scratch: Path,
) -> dict[str, Any]:
    """Copy of a training input with ``systems`` filled in per head (multi-task) or for the single task."""
    filled = copy.deepcopy(dict(deepmd_input))
    training = filled["training"]
    multitask = "model_dict" in filled["model"]
    for head, sets in head_datasets.items():
        section = training["data_dict"][head] if multitask else training
        section["training_data"]["systems"] = dataset_systems(
            sets["train"], datasets, dataset_formats, scratch
        )
        if sets.get("validation"):
            section["validation_data"]["systems"] = dataset_systems(
                sets["validation"], datasets, dataset_formats, scratch
            )
        else:
            section.pop("validation_data", None)
    return filled


def write_json(path: Path, data: Mapping[str, Any]) -> Path:
    path.write_text(json.dumps(data, indent=2, sort_keys=False) + "\n")
    return path


def last_lcurve_row(path: Path) -> dict[str, float]:
    """The last row of ``lcurve.out`` as {column: value} (NaN columns dropped)."""
    header: list[str] = []
    last: list[str] = []
    for line in path.read_text().splitlines():
        if line.startswith("#"):
            words = line[1:].split()
            if words and words[0] == "step":
                header = words
        elif line.strip():
            last = line.split()
    row = {}
    for key, value in zip(header, last, strict=False):
        number = float(value)
        if not math.isnan(number):
            row[key] = number
    return row


_METRIC_LINE = re.compile(r"(Energy|Force|Virial)\s+(MAE|RMSE)(/Natoms)?\s*:\s*([-+0-9.eE]+|nan)")


def parse_test_metrics(log_text: str) -> dict[str, float]:
    """Errors from the "weighted average of errors" block of ``dp test`` output.

    Keys: energy_{mae,rmse} (eV), energy_{mae,rmse}_per_atom (eV/atom), force_{mae,rmse} (eV/Å),
    virial_{mae,rmse}[_per_atom] when the data has virials. Raises ValueError when the block is absent.
    """
    marker = log_text.rfind("weighted average of errors")
    if marker < 0:
        raise ValueError("no 'weighted average of errors' block in dp test output")
    metrics: dict[str, float] = {}
    for match in _METRIC_LINE.finditer(log_text[marker:]):
        quantity, kind, per_atom, value = match.groups()
        key = f"{quantity.lower()}_{kind.lower()}" + ("_per_atom" if per_atom else "")
        metrics.setdefault(key, float(value))
    if "energy_rmse_per_atom" not in metrics and "force_rmse" not in metrics:
        raise ValueError("dp test printed no energy or force errors")
    return metrics
