"""Freeze step: ``dp --pt freeze`` of one head of a (multi-task) training checkpoint."""

from __future__ import annotations

from pathlib import Path

from dflow.python import OP, OPIO, Artifact, OPIOSign, Parameter

from lamflow.ops import files
from lamflow.ops.common import run_dp_step, work_dir
from lamflow.ops.dp import freeze_command

MODEL_OUTPUT_SIGN = {"model": Artifact(Path), "log": Artifact(Path)}


class FreezeOP(OP):
    """Freeze ``checkpoint`` into a TorchScript ``model.pth``; ``head`` selects a multi-task branch."""

    @classmethod
    def get_input_sign(cls):
        return OPIOSign({"checkpoint": Artifact(Path), "head": Parameter(str, default="")})

    @classmethod
    def get_output_sign(cls):
        return OPIOSign(dict(MODEL_OUTPUT_SIGN))

    @OP.exec_sign_check
    def execute(self, op_in: OPIO) -> OPIO:
        cwd = work_dir()
        # dp freeze reads a checkpoint folder: its `checkpoint` file names the .pt to load.
        ckpt = cwd / files.CHECKPOINT
        ckpt.unlink(missing_ok=True)
        ckpt.symlink_to(Path(op_in["checkpoint"]).resolve())
        (cwd / "checkpoint").write_text(files.CHECKPOINT)  # read verbatim by dp: no newline
        run_dp_step(freeze_command(files.FROZEN_MODEL, head=op_in["head"] or None), cwd, files.FREEZE_LOG)
        ckpt.unlink()
        return OPIO({"model": cwd / files.FROZEN_MODEL, "log": cwd / files.FREEZE_LOG})
