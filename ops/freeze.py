"""Freeze step: ``dp --pt freeze`` of one head of a (multi-task) training checkpoint."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field

from lamflow.ops.dp import freeze_command
from lamflow.ops.runtime import files
from lamflow.ops.runtime.common import ModelOutput, run_dp_step, work_dir
from lamflow.ops.runtime.contract import LamflowOP, OpModel


class FreezeParams(OpModel):
    head: str = Field("", description="Head of a multi-task checkpoint; empty for a single-task one.")


class FreezeInput(FreezeParams):
    checkpoint: Path


class FreezeOP(LamflowOP[FreezeInput, ModelOutput]):
    """Freeze ``checkpoint`` into ``model.pth``; ``head`` selects a multi-task branch."""

    name = "freeze"
    Params = FreezeParams
    Input = FreezeInput
    Output = ModelOutput

    def run(self, inp: FreezeInput) -> ModelOutput:
        cwd = work_dir()
        # dp freeze reads a checkpoint folder: its `checkpoint` file names the .pt to load.
        ckpt = cwd / files.CHECKPOINT
        ckpt.unlink(missing_ok=True)
        ckpt.symlink_to(inp.checkpoint.resolve())
        (cwd / "checkpoint").write_text(files.CHECKPOINT)  # read verbatim by dp: no newline
        run_dp_step(freeze_command(files.FROZEN_MODEL, head=inp.head or None), cwd, files.FREEZE_LOG)
        ckpt.unlink()
        return ModelOutput(model=cwd / files.FROZEN_MODEL, log=cwd / files.FREEZE_LOG)
