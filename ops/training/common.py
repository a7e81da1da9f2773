"""What every training op shares: its parameters, its outputs, writing ``input.json``, reading lcurve."""

from __future__ import annotations

import copy
import math
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from pydantic import Field

from lamflow.ops.data.datasets import DatasetFormat, dataset_systems, find_npy_systems
from lamflow.ops.dp import Topology, freeze_command, train_command
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


def labelled_field() -> Any:
    """The ``labelled`` input of a concurrent-learning loop's members (fine-tunes and students alike)."""
    return Field(
        None,
        description="More training systems (deepmd/npy, found below this folder): the frames a "
        "concurrent-learning loop labelled so far.",
    )


def previous_field() -> Any:
    """The ``previous`` input of a concurrent-learning loop's members."""
    return Field(
        None,
        description="A concurrent-learning member's own checkpoint of the previous iteration: when given, "
        "training fine-tunes it (with its own fitting net) instead of starting where iteration 1 did.",
    )


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


def write_training_input(
    params: TrainParams, datasets: Mapping[str, Path], cwd: Path, labelled: Path | None = None
) -> Path:
    """``input.json`` in ``cwd``: the step's DeePMD-kit input with the staged systems filled in, and (a
    single-task input) the deepmd/npy systems below ``labelled`` appended to its training systems: the
    frames a concurrent-learning loop labelled so far (an iteration that labelled nothing hands on an empty
    folder)."""
    deepmd_input = fill_systems(
        params.deepmd_input, params.head_datasets, datasets, params.dataset_formats, cwd / "systems"
    )
    if labelled is not None:
        deepmd_input["training"]["training_data"]["systems"] += [
            str(p) for p in find_npy_systems(labelled.resolve())
        ]
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


def train_and_freeze(
    cwd: Path, finetune: Path | None = None, model_branch: str | None = None
) -> dict[str, Any]:
    """``dp --pt train input.json`` in ``cwd``, then ``dp --pt freeze``: the fields of a training op's
    output with ``model``. ``finetune``: a training checkpoint to start from (``--finetune``, the model
    section taken from it with ``--use-pretrain-script``; ``model_branch``: its head). A rerun continues
    from the newest checkpoint a killed run left (and the lost pod's on Argo): a fine-tune with the input
    as DeePMD-kit completed it (``out.json``, where the base's model section is)."""
    checkpoint_sync.restore(cwd)
    restart = latest_checkpoint(cwd)
    if finetune is not None and not (cwd / files.COMPLETED_INPUT).is_file():
        restart = None  # killed before DeePMD-kit wrote out.json: the fine-tune starts again

    def command(topo: Topology) -> list[str]:
        if restart is not None:
            given = files.INPUT_JSON if finetune is None else files.COMPLETED_INPUT
            return train_command(given, restart=restart.name, topology=topo)
        if finetune is not None:
            return train_command(
                files.INPUT_JSON,
                finetune=finetune.resolve(),
                model_branch=model_branch,
                use_pretrain_script=True,
                topology=topo,
            )
        return train_command(files.INPUT_JSON, topology=topo)

    with checkpoint_sync.Uploader(cwd):
        run_training(command, cwd, files.TRAIN_LOG)
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
