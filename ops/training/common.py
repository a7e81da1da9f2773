"""What every training op shares: its parameters, its outputs, writing ``input.json``, reading lcurve."""

from __future__ import annotations

import copy
import math
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from pydantic import Field

from lamflow.ops.data.datasets import DatasetFormat, dataset_systems
from lamflow.ops.dp import freeze_command, train_command
from lamflow.ops.runtime import files
from lamflow.ops.runtime.common import run_dp_step, write_json
from lamflow.ops.runtime.contract import OpModel
from lamflow.ops.training import checkpoint_sync
from lamflow.ops.training.checkpoint import latest_checkpoint
from lamflow.ops.training.distributed import run_training


class HeadData(OpModel):
    """The datasets feeding one head (multi-task) or the single task."""

    train: list[str] = Field(min_length=1)
    validation: list[str] = Field(default_factory=list)


class TrainParams(OpModel):
    """Parameters of every training op."""

    deepmd_input: dict[str, Any] = Field(description="DeePMD-kit input with empty `systems` lists.")
    head_datasets: dict[str, HeadData] = Field(description="Which staged datasets feed which head.")
    dataset_formats: dict[str, DatasetFormat]


class TrainOutput(OpModel):
    """Files and figures every training op publishes."""

    checkpoint: Path
    input_json: Path
    lcurve: Path
    log: Path
    lcurve_last: dict[str, float]
    device: str = Field(
        "unknown",
        description="Where dp trained, from its start-up summary: 'CUDA:0 (NVIDIA H100 80GB HBM3)', 'CPU'.",
    )


def fill_systems(
    deepmd_input: Mapping[str, Any],
    head_datasets: Mapping[str, HeadData],
    datasets: Mapping[str, Path],
    formats: Mapping[str, DatasetFormat],
    scratch: Path,
) -> dict[str, Any]:
    """Copy of a training input with ``systems`` filled in per head (multi-task) or for the single task."""
    filled = copy.deepcopy(dict(deepmd_input))
    training = filled["training"]
    multitask = "model_dict" in filled["model"]
    for head, sets in head_datasets.items():
        section = training["data_dict"][head] if multitask else training
        section["training_data"]["systems"] = dataset_systems(sets.train, datasets, formats, scratch)
        if sets.validation:
            section["validation_data"]["systems"] = dataset_systems(
                sets.validation, datasets, formats, scratch
            )
        else:
            section.pop("validation_data", None)
    return filled


def write_training_input(params: TrainParams, datasets: Mapping[str, Path], cwd: Path) -> Path:
    """``input.json`` in ``cwd``: the step's DeePMD-kit input with the staged systems filled in."""
    deepmd_input = fill_systems(
        params.deepmd_input, params.head_datasets, datasets, params.dataset_formats, cwd / "systems"
    )
    return write_json(cwd / files.INPUT_JSON, deepmd_input)


def read_lcurve(path: Path) -> tuple[list[str], list[list[float]]]:
    """(columns, rows) of a DeePMD-kit ``lcurve.out`` (its ``# step ...`` header names the columns)."""
    header: list[str] = []
    rows: list[list[float]] = []
    for line in path.read_text().splitlines():
        if line.startswith("#"):
            words = line[1:].split()
            if words and words[0] == "step":
                header = words
        elif line.strip():
            rows.append([float(x) for x in line.split()])
    return header, rows


def last_lcurve_row(path: Path) -> dict[str, float]:
    """The last row of ``lcurve.out`` as {column: value} (NaN columns dropped)."""
    header, rows = read_lcurve(path)
    last = rows[-1] if rows else []
    return {key: value for key, value in zip(header, last, strict=False) if not math.isnan(value)}


DEVICE_LINE = re.compile(r"Computing Device:\s*(\S.*?)\s*$", re.M)
DEVICE_NAME_LINE = re.compile(r"Device Name:\s*(\S.*?)\s*$", re.M)


def training_device(log: Path) -> str:
    """Where ``dp train`` ran, from the summary DeePMD-kit logs at start (its last one: a restarted run
    logs it again): ``CUDA:0 (NVIDIA H100 80GB HBM3)``, ``CPU``, or ``unknown`` when the log has none."""
    try:
        text = log.read_text(errors="replace")
    except OSError:
        return "unknown"
    devices = DEVICE_LINE.findall(text)
    if not devices:
        return "unknown"
    names = DEVICE_NAME_LINE.findall(text)
    return f"{devices[-1]} ({names[-1]})" if names and devices[-1] != "CPU" else devices[-1]


def train_and_freeze(cwd: Path) -> dict[str, Any]:
    """``dp --pt train input.json`` in ``cwd`` (from its newest checkpoint when a killed run left one, and
    the lost pod's on Argo), then ``dp --pt freeze``: the fields of a training op's output with ``model``."""
    checkpoint_sync.restore(cwd)
    restart = latest_checkpoint(cwd)
    with checkpoint_sync.Uploader(cwd):
        run_training(
            lambda topo: train_command(files.INPUT_JSON, restart=restart and restart.name, topology=topo),
            cwd,
            files.TRAIN_LOG,
        )
    run_dp_step(freeze_command(files.FROZEN_MODEL), cwd, files.FREEZE_LOG)
    return {
        **train_output_files(cwd),
        "model": cwd / files.FROZEN_MODEL,
        "freeze_log": cwd / files.FREEZE_LOG,
    }


def train_output_files(cwd: Path) -> dict[str, Any]:
    """The :class:`TrainOutput` fields of a finished ``dp train`` in ``cwd``."""
    return {
        "checkpoint": cwd / files.CHECKPOINT,
        "input_json": cwd / files.INPUT_JSON,
        "lcurve": cwd / files.LCURVE,
        "log": cwd / files.TRAIN_LOG,
        "lcurve_last": last_lcurve_row(cwd / files.LCURVE),
        "device": training_device(cwd / files.TRAIN_LOG),
    }
