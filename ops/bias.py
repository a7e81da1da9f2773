"""Change-bias step: re-fit a frozen model's per-element energy bias on a dataset (zero-shot protocol)."""

from __future__ import annotations

from pathlib import Path
from typing import Dict  # dflow accepts typing.Dict, not dict[...], in artifact signatures

from dflow.python import OP, OPIO, Artifact, FatalError, OPIOSign, Parameter

from lamflow.ops import files
from lamflow.ops.common import dataset_root, work_dir
from lamflow.ops.dp import DpError, change_bias_command, run_dp


class ChangeBiasOP(OP):
    """``dp --pt change-bias MODEL -s DATA -m change`` -> ``model.pth`` with the re-fitted bias."""

    @classmethod
    def get_input_sign(cls):
        return OPIOSign(
            {
                "dataset": str,
                "dataset_formats": dict,
                "mode": Parameter(str, default="change"),
                "datasets": Artifact(Dict[str, Path]),
                "model": Artifact(Path),
            }
        )

    @classmethod
    def get_output_sign(cls):
        return OPIOSign({"model": Artifact(Path), "log": Artifact(Path)})

    @OP.exec_sign_check
    def execute(self, op_in: OPIO) -> OPIO:
        cwd = work_dir()
        systems = dataset_root(op_in["dataset"], op_in["datasets"], op_in["dataset_formats"], cwd / "systems")
        try:
            run_dp(
                change_bias_command(
                    Path(op_in["model"]).resolve(), systems, output=files.FROZEN_MODEL, mode=op_in["mode"]
                ),
                cwd=cwd,
                log_file=files.BIAS_LOG,
            )
        except DpError as exc:
            raise FatalError(str(exc)) from exc
        return OPIO({"model": cwd / files.FROZEN_MODEL, "log": cwd / files.BIAS_LOG})
