"""Freeze step: ``dp --pt freeze`` of one head of a (multi-task) training checkpoint."""

from __future__ import annotations

from pathlib import Path

from dflow.python import OP, OPIO, Artifact, FatalError, OPIOSign, Parameter

from lamflow.ops import files
from lamflow.ops.common import work_dir
from lamflow.ops.dp import DpError, freeze_command, run_dp


class FreezeOP(OP):
    """Freeze ``checkpoint`` into a TorchScript ``model.pth``; ``head`` selects a multi-task branch."""

    @classmethod
    def get_input_sign(cls):
        return OPIOSign({"checkpoint": Artifact(Path), "head": Parameter(str, default="")})

    @classmethod
    def get_output_sign(cls):
        return OPIOSign({"model": Artifact(Path), "log": Artifact(Path)})

    @OP.exec_sign_check
    def execute(self, op_in: OPIO) -> OPIO:
        cwd = work_dir()
        # dp freeze reads a checkpoint folder: the `checkpoint` file names the .pt to load.
        ckpt = cwd / files.CHECKPOINT
        ckpt.unlink(missing_ok=True)
        ckpt.symlink_to(Path(op_in["checkpoint"]).resolve())
        (cwd / "checkpoint").write_text(files.CHECKPOINT)  # read verbatim by dp: no newline
        try:
            run_dp(
                freeze_command(files.FROZEN_MODEL, head=op_in["head"] or None),
                cwd=cwd,
                log_file=files.FREEZE_LOG,
            )
        except DpError as exc:
            raise FatalError(str(exc)) from exc
        ckpt.unlink()
        return OPIO({"model": cwd / files.FROZEN_MODEL, "log": cwd / files.FREEZE_LOG})
