"""Change-bias step: re-fit a frozen model's per-element energy bias on a dataset (zero-shot protocol)."""

from __future__ import annotations

from pathlib import Path

from dflow.python import OP, OPIO, Artifact, OPIOSign, Parameter

from lamflow.ops import files
from lamflow.ops.common import DATASET_INPUTS, dataset_root, run_dp_step, work_dir
from lamflow.ops.dp import change_bias_command
from lamflow.ops.freeze import MODEL_OUTPUT_SIGN


class ChangeBiasOP(OP):
    """``dp --pt change-bias MODEL -s DATA -m change`` -> ``model.pth`` with the re-fitted bias."""

    @classmethod
    def get_input_sign(cls):
        return OPIOSign(
            {
                "dataset": str,
                "mode": Parameter(str, default="change"),
                "model": Artifact(Path),
                **DATASET_INPUTS,
            }
        )

    @classmethod
    def get_output_sign(cls):
        return OPIOSign(dict(MODEL_OUTPUT_SIGN))

    @OP.exec_sign_check
    def execute(self, op_in: OPIO) -> OPIO:
        cwd = work_dir()
        systems = dataset_root(op_in["dataset"], op_in["datasets"], op_in["dataset_formats"], cwd / "systems")
        argv = change_bias_command(
            Path(op_in["model"]).resolve(), systems, output=files.FROZEN_MODEL, mode=op_in["mode"]
        )
        run_dp_step(argv, cwd, files.BIAS_LOG)
        return OPIO({"model": cwd / files.FROZEN_MODEL, "log": cwd / files.BIAS_LOG})
