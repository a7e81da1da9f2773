"""Pretrain step: ``dp --pt train`` on a multi-task (one head per dataset group) or single-task input."""

from __future__ import annotations

from pathlib import Path
from typing import Dict  # dflow accepts typing.Dict, not dict[...], in artifact signatures

from dflow.python import OP, OPIO, Artifact, FatalError, OPIOSign

from lamflow.ops import files
from lamflow.ops.common import fill_systems, last_lcurve_row, work_dir, write_json
from lamflow.ops.dp import DpError, run_dp, train_command


def train_outputs(cwd: Path) -> dict:
    """The files every training step publishes."""
    return {
        "checkpoint": cwd / files.CHECKPOINT,
        "input_json": cwd / files.INPUT_JSON,
        "lcurve": cwd / files.LCURVE,
        "log": cwd / files.TRAIN_LOG,
        "lcurve_last": last_lcurve_row(cwd / files.LCURVE),
    }


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
        return OPIOSign(
            {
                "deepmd_input": dict,
                "head_datasets": dict,
                "dataset_formats": dict,
                "datasets": Artifact(Dict[str, Path]),
            }
        )

    @classmethod
    def get_output_sign(cls):
        return OPIOSign(dict(TRAIN_OUTPUT_SIGN))

    @OP.exec_sign_check
    def execute(self, op_in: OPIO) -> OPIO:
        cwd = work_dir()
        deepmd_input = fill_systems(
            op_in["deepmd_input"],
            op_in["head_datasets"],
            op_in["datasets"],
            op_in["dataset_formats"],
            cwd / "systems",
        )
        write_json(cwd / files.INPUT_JSON, deepmd_input)
        try:
            run_dp(train_command(files.INPUT_JSON), cwd=cwd, log_file=files.TRAIN_LOG)
        except DpError as exc:
            raise FatalError(str(exc)) from exc
        return OPIO(train_outputs(cwd))
