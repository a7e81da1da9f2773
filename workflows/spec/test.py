"""``stages.test`` — models x datasets -> energy/atom, force and virial RMSE/MAE."""

from __future__ import annotations

from typing import Annotated

from pydantic import Field, StringConstraints

from lamflow.workflows.spec.base import Name, SpecModel

ModelRef = Annotated[str, StringConstraints(pattern=r"^(pretrain|finetune)\.[A-Za-z0-9][A-Za-z0-9_.-]*$")]


class TestGroup(SpecModel):
    __test__ = False  # not a pytest class

    models: list[ModelRef] = Field(
        min_length=1,
        description="'pretrain.<head>' (frozen head of the pretrained model) or 'finetune.<name>'.",
    )
    datasets: list[Name] = Field(min_length=1, description="Every model is tested on every dataset.")
    refit_bias_on: Name | None = Field(
        None,
        description="Zero-shot protocol: before testing, re-fit each model's per-element energy bias on "
        "this dataset with `dp change-bias -m change` (use training data, not the test set).",
    )
    frames: int = Field(0, ge=0, description="Frames per system to test (0 = all).")
