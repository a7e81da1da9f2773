"""Scratch step: ``dp --pt train`` from a random initialisation on staged datasets, then ``dp --pt freeze``
— the from-scratch baseline of a learning curve. A rerun after a kill continues from its checkpoint."""

from __future__ import annotations

from pathlib import Path

from lamflow.ops import checkpoint_sync, files
from lamflow.ops.common import run_dp_step, work_dir
from lamflow.ops.contract import LamflowOP
from lamflow.ops.dp import freeze_command, train_command
from lamflow.ops.training import (
    TrainOutput,
    TrainParams,
    latest_checkpoint,
    train_output_files,
    write_training_input,
)


class ScratchParams(TrainParams):
    """A full single-task input (descriptor and fitting net given) and the datasets of its one task."""


class ScratchInput(ScratchParams):
    datasets: dict[str, Path]


class ScratchOutput(TrainOutput):
    model: Path
    freeze_log: Path


class ScratchOP(LamflowOP[ScratchInput, ScratchOutput]):
    name = "scratch"
    Params = ScratchParams
    Input = ScratchInput
    Output = ScratchOutput

    def run(self, inp: ScratchInput) -> ScratchOutput:
        cwd = work_dir()
        write_training_input(inp, inp.datasets, cwd)
        checkpoint_sync.restore(cwd)
        restart = latest_checkpoint(cwd)
        with checkpoint_sync.Uploader(cwd):
            run_dp_step(
                train_command(files.INPUT_JSON, restart=restart and restart.name), cwd, files.TRAIN_LOG
            )
        run_dp_step(freeze_command(files.FROZEN_MODEL), cwd, files.FREEZE_LOG)
        return ScratchOutput(
            **train_output_files(cwd), model=cwd / files.FROZEN_MODEL, freeze_log=cwd / files.FREEZE_LOG
        )
