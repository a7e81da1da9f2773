"""Change-bias step: re-fit a frozen model's per-element energy bias on a dataset (zero-shot protocol)."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field

from lamflow.ops.data.datasets import DatasetFormat, StagedDatasets, dataset_root
from lamflow.ops.dp import change_bias_command
from lamflow.ops.runtime import files
from lamflow.ops.runtime.common import ModelOutput, run_dp_step, work_dir
from lamflow.ops.runtime.contract import LamflowOP, OpModel


class ChangeBiasParams(OpModel):
    dataset: str = Field(description="The staged dataset whose labels the bias is fitted to.")
    mode: Literal["change", "set"] = "change"
    dataset_formats: dict[str, DatasetFormat]


class ChangeBiasInput(ChangeBiasParams, StagedDatasets):
    model: Path


class ChangeBiasOP(LamflowOP[ChangeBiasInput, ModelOutput]):
    """``dp --pt change-bias MODEL -s DATA -m change`` -> ``model.pth`` with the re-fitted bias."""

    name = "change-bias"
    Params = ChangeBiasParams
    Input = ChangeBiasInput
    Output = ModelOutput

    def run(self, inp: ChangeBiasInput) -> ModelOutput:
        cwd = work_dir()
        systems = dataset_root(inp.dataset, inp.datasets, inp.dataset_formats, cwd / "systems")
        argv = change_bias_command(inp.model.resolve(), systems, output=files.FROZEN_MODEL, mode=inp.mode)
        run_dp_step(argv, cwd, files.BIAS_LOG)
        return ModelOutput(model=cwd / files.FROZEN_MODEL, log=cwd / files.BIAS_LOG)
