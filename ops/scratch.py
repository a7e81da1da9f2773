"""Scratch step: ``dp --pt train`` from a random initialisation on staged datasets, then ``dp --pt freeze``
— the from-scratch baseline of a learning curve, and the student members of a concurrent-learning loop
(with the frames it labelled so far, and from iteration 2 on, optionally, their own checkpoint). A rerun
after a kill continues from its checkpoint."""

from __future__ import annotations

from pathlib import Path

from dflow.python import FatalError

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


class ScratchParams(TrainParams):
    """A full single-task input (descriptor and fitting net given) and the datasets of its one task."""


class ScratchInput(ScratchParams, StagedDatasets):
    labelled: Path | None = labelled_field()
    previous: Path | None = previous_field()


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
        if inp.previous is not None and inp.previous.suffix != ".pt":
            raise FatalError(f"{inp.previous.name}: continuing needs a DeePMD-kit training checkpoint (.pt)")
        write_training_input(inp, inp.datasets, cwd, inp.labelled)
        return ScratchOutput(**train_and_freeze(cwd, finetune=inp.previous))
