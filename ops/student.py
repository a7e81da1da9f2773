"""Student step: ``dp --pt train`` from scratch on the teacher's labels (``train/``, validated on
``valid/`` when present), then ``dp --pt freeze``. A rerun after a kill continues from its checkpoint."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

from dflow.python import FatalError
from pydantic import Field

from lamflow.ops.data.datasets import find_npy_systems
from lamflow.ops.runtime import files
from lamflow.ops.runtime.common import work_dir, write_json
from lamflow.ops.runtime.contract import LamflowOP, OpModel
from lamflow.ops.training.common import TrainOutput, train_and_freeze


class StudentParams(OpModel):
    deepmd_input: dict[str, Any] = Field(description="Single-task DeePMD-kit input with empty `systems`.")


class StudentInput(StudentParams):
    labels: Path


class StudentOutput(TrainOutput):
    model: Path
    freeze_log: Path


def student_input(deepmd_input: dict[str, Any], labels: Path) -> dict[str, Any]:
    filled = copy.deepcopy(deepmd_input)
    training = filled["training"]
    train = [str(p) for p in find_npy_systems(labels / "train")] if (labels / "train").is_dir() else []
    if not train:
        raise FatalError(f"{labels}: no labelled training systems")
    training["training_data"]["systems"] = train
    valid = [str(p) for p in find_npy_systems(labels / "valid")] if (labels / "valid").is_dir() else []
    if valid:
        training.setdefault("validation_data", {"batch_size": training["training_data"]["batch_size"]})
        training["validation_data"]["systems"] = valid
    else:
        training.pop("validation_data", None)
    return filled


class StudentOP(LamflowOP[StudentInput, StudentOutput]):
    name = "student"
    Params = StudentParams
    Input = StudentInput
    Output = StudentOutput

    def run(self, inp: StudentInput) -> StudentOutput:
        cwd = work_dir()
        write_json(cwd / files.INPUT_JSON, student_input(inp.deepmd_input, inp.labels.resolve()))
        return StudentOutput(**train_and_freeze(cwd))
