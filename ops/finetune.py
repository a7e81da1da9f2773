"""Fine-tune step: ``dp --pt train --finetune CKPT`` then ``dp --pt freeze`` of the result."""

from __future__ import annotations

from pathlib import Path

from dflow.python import FatalError
from pydantic import Field

from lamflow.ops.data.datasets import StagedDatasets
from lamflow.ops.runtime.common import work_dir
from lamflow.ops.runtime.contract import LamflowOP
from lamflow.ops.training.common import (
    TrainOutput,
    TrainParams,
    labelled_field,
    previous_field,
    train_and_freeze,
    write_training_input,
)


class FinetuneParams(TrainParams):
    model_branch: str = Field(
        "",
        description="Head of a multi-task checkpoint to start from, RANDOM for a fresh fitting net, or empty "
        "for a single-task checkpoint's own fitting net.",
    )


class FinetuneInput(FinetuneParams, StagedDatasets):
    base_checkpoint: Path
    labelled: Path | None = labelled_field()
    previous: Path | None = previous_field()


class FinetuneOutput(TrainOutput):
    model: Path
    freeze_log: Path


class FinetuneOP(LamflowOP[FinetuneInput, FinetuneOutput]):
    """Fine-tune from a training checkpoint (``base_checkpoint``, a .pt file) and freeze the result.

    The descriptor comes from the checkpoint (``--use-pretrain-script``), the ``type_map`` from our input,
    and the fitting net from the checkpoint's head, or from our input with ``model_branch`` RANDOM (a new
    energy or property fitting net; DeePMD-kit's ``deepmd/utils/finetune.py``).

    A rerun of a step that saved a checkpoint continues from it with ``--restart``, reading ``out.json``
    (the input as DeePMD-kit completed it, model section from the base checkpoint included).
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
        write_training_input(inp, inp.datasets, cwd, inp.labelled)
        return FinetuneOutput(**train_and_freeze(cwd, finetune=start, model_branch=branch))
