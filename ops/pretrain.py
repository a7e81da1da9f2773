"""Pretrain step: ``dp --pt train`` on a multi-task (one head per dataset group) or single-task input."""

from __future__ import annotations

from pathlib import Path

from dflow.python import OP, OPIO, Artifact, OPIOSign

from lamflow.ops import files
from lamflow.ops.common import (
    DATASET_INPUTS,
    fill_systems,
    last_lcurve_row,
    run_dp_step,
    work_dir,
    write_json,
)
from lamflow.ops.dp import train_command


def write_training_input(op_in: OPIO, cwd: Path) -> None:
    """``input.json`` in ``cwd``: the step's DeePMD-kit input with the staged systems filled in."""
    deepmd_input = fill_systems(
        op_in["deepmd_input"],
        op_in["head_datasets"],
        op_in["datasets"],
        op_in["dataset_formats"],
        cwd / "systems",
    )
    write_json(cwd / files.INPUT_JSON, deepmd_input)


def train_outputs(cwd: Path) -> dict:
    """The files every training step publishes."""
    return {
        "checkpoint": cwd / files.CHECKPOINT,
        "input_json": cwd / files.INPUT_JSON,
        "lcurve": cwd / files.LCURVE,
        "log": cwd / files.TRAIN_LOG,
        "lcurve_last": last_lcurve_row(cwd / files.LCURVE),
    }


TRAIN_INPUT_SIGN = {"deepmd_input": dict, "head_datasets": dict, **DATASET_INPUTS}

TRAIN_OUTPUT_SIGN = {
    "checkpoint": Artifact(Path),
    "input_json": Artifact(Path),
    "lcurve": Artifact(Path),
    "log": Artifact(Path),
    "lcurve_last": dict,
}


class PretrainOP(OP):
    """Train from scratch. Inputs: the DeePMD-kit input with empty ``systems``, which datasets feed which
    head (``{head: {train: [...], validation: [...]}}``), dataset formats, and the datasets artifact."""

    @classmethod
    def get_input_sign(cls):
        return OPIOSign(dict(TRAIN_INPUT_SIGN))

    @classmethod
    def get_output_sign(cls):
        return OPIOSign(dict(TRAIN_OUTPUT_SIGN))

    @OP.exec_sign_check
    def execute(self, op_in: OPIO) -> OPIO:
        cwd = work_dir()
        write_training_input(op_in, cwd)
        run_dp_step(train_command(files.INPUT_JSON), cwd, files.TRAIN_LOG)
        return OPIO(train_outputs(cwd))
