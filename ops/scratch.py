"""Scratch step: ``dp --pt train`` from a random initialisation on staged datasets, then ``dp --pt freeze``
— the from-scratch baseline of a learning curve. A rerun after a kill continues from its checkpoint."""

from __future__ import annotations

from pathlib import Path

from lamflow.ops.data.datasets import StagedDatasets
from lamflow.ops.runtime.common import work_dir
from lamflow.ops.runtime.contract import LamflowOP
from lamflow.ops.training.common import TrainOutput, TrainParams, train_and_freeze, write_training_input


class ScratchParams(TrainParams):
    """A full single-task input (descriptor and fitting net given) and the datasets of its one task."""


class ScratchInput(ScratchParams, StagedDatasets):
    pass


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
        return ScratchOutput(**train_and_freeze(cwd))
