"""Fine-tune step: ``dp --pt train --finetune CKPT`` then ``dp --pt freeze`` of the result."""

from __future__ import annotations

import json
from pathlib import Path

from dflow.python import FatalError
from pydantic import Field

from lamflow.ops.data.datasets import StagedDatasets, find_npy_systems
from lamflow.ops.dp import Topology, freeze_command, train_command
from lamflow.ops.runtime import files
from lamflow.ops.runtime.common import run_dp_step, work_dir, write_json
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


class FinetuneParams(TrainParams):
    model_branch: str = Field(
        "",
        description="Head of a multi-task checkpoint to start from, RANDOM for a fresh fitting net, or empty "
        "for a single-task checkpoint's own fitting net.",
    )


class FinetuneInput(FinetuneParams, StagedDatasets):
    base_checkpoint: Path
    labelled: Path | None = Field(
        None,
        description="More training systems (deepmd/npy, found below this folder): the frames a "
        "concurrent-learning loop labelled so far.",
    )
    previous: Path | None = Field(
        None,
        description="A concurrent-learning member's own checkpoint of the previous iteration: when given, "
        "training fine-tunes it (with its own fitting net) instead of base_checkpoint.",
    )


class FinetuneOutput(TrainOutput):
    model: Path
    freeze_log: Path


def add_training_systems(input_json: Path, folder: Path) -> None:
    """Append the deepmd/npy systems below ``folder`` to a single-task input's training systems."""
    systems = [str(p) for p in find_npy_systems(folder)]
    if not systems:
        return  # an iteration that labelled nothing new hands on an empty folder
    config = json.loads(input_json.read_text())
    config["training"]["training_data"]["systems"] += systems
    write_json(input_json, config)


class FinetuneOP(LamflowOP[FinetuneInput, FinetuneOutput]):
    """Fine-tune from a training checkpoint (``base_checkpoint``, a .pt file) and freeze the result.

    The model section comes from the checkpoint (``--use-pretrain-script``); only its ``type_map`` is taken
    from our input. A rerun of a step that saved a checkpoint continues from it with ``--restart``, reading
    ``out.json`` (the input as DeePMD-kit completed it, model section from the base checkpoint included).
    """

    name = "finetune"
    Params = FinetuneParams
    Input = FinetuneInput
    Output = FinetuneOutput

    def run(self, inp: FinetuneInput) -> FinetuneOutput:
        cwd = work_dir()
        # a loop member that continues: its own single-task checkpoint, fitting net and all
        start = inp.previous if inp.previous is not None else inp.base_checkpoint
        branch = None if inp.previous is not None else inp.model_branch or None
        if start.suffix != ".pt":
            raise FatalError(f"{start.name}: fine-tuning needs a DeePMD-kit training checkpoint (.pt)")
        written = write_training_input(inp, inp.datasets, cwd)
        if inp.labelled is not None:
            add_training_systems(written, inp.labelled.resolve())
        checkpoint_sync.restore(cwd)  # a retried pod on Argo: the lost pod's newest checkpoint
        restart = latest_checkpoint(cwd)
        resuming = restart is not None and (cwd / files.COMPLETED_INPUT).is_file()

        def command(topo: Topology) -> list[str]:
            if resuming:
                assert restart is not None
                return train_command(files.COMPLETED_INPUT, restart=restart.name, topology=topo)
            return train_command(
                files.INPUT_JSON,
                finetune=start.resolve(),
                model_branch=branch,
                use_pretrain_script=True,
                topology=topo,
            )

        with checkpoint_sync.Uploader(cwd):
            run_training(command, cwd, files.TRAIN_LOG)
        run_dp_step(freeze_command(files.FROZEN_MODEL), cwd, files.FREEZE_LOG)
        return FinetuneOutput(
            **train_output_files(cwd), model=cwd / files.FROZEN_MODEL, freeze_log=cwd / files.FREEZE_LOG
        )
