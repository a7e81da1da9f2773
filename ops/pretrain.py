"""Pretrain step: ``dp --pt train`` on a multi-task (one head per dataset group) or single-task input."""

from __future__ import annotations

from lamflow.ops.data.datasets import StagedDatasets
from lamflow.ops.dp import train_command
from lamflow.ops.runtime import files
from lamflow.ops.runtime.common import work_dir
from lamflow.ops.runtime.contract import LamflowOP
from lamflow.ops.training import checkpoint_sync
from lamflow.ops.training.checkpoint import latest_checkpoint
from lamflow.ops.training.common import (
    TrainOutput,
    TrainParams,
    train_output_files,
    write_training_input,
)
from lamflow.ops.training.distributed import run_training


class PretrainParams(TrainParams):
    pass


class PretrainInput(PretrainParams, StagedDatasets):
    pass


class PretrainOutput(TrainOutput):
    pass


class PretrainOP(LamflowOP[PretrainInput, PretrainOutput]):
    """Train from scratch on the staged datasets (``systems`` are filled in per head); a rerun of a step
    that saved a checkpoint continues from it."""

    name = "pretrain"
    Params = PretrainParams
    Input = PretrainInput
    Output = PretrainOutput

    def run(self, inp: PretrainInput) -> PretrainOutput:
        cwd = work_dir()
        write_training_input(inp, inp.datasets, cwd)
        checkpoint_sync.restore(cwd)  # a retried pod on Argo: the lost pod's newest checkpoint
        restart = latest_checkpoint(cwd)
        with checkpoint_sync.Uploader(cwd):
            run_training(
                lambda topo: train_command(files.INPUT_JSON, restart=restart and restart.name, topology=topo),
                cwd,
                files.TRAIN_LOG,
            )
        return PretrainOutput(**train_output_files(cwd))
