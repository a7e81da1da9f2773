"""``stages.test`` — models x datasets -> energy/atom, force and virial RMSE/MAE."""

from __future__ import annotations

from pydantic import Field

from lamflow.workflows.spec.base import MAX_FRAMES, ModelRef, Name, SpecModel


class TestSpec(SpecModel):
    """One test group: every model is tested on every dataset."""

    __test__ = False  # not a pytest class

    models: list[ModelRef] = Field(
        min_length=1,
        description="Model references: 'pretrain.<head>' (frozen head of the pretrained model), "
        "'finetune.<name>', 'models.<name>' (an external model declared under models:), ...",
    )
    datasets: list[Name] = Field(min_length=1, description="Every model is tested on every dataset.")
    change_bias_on: Name | None = Field(
        None,
        description="Zero-shot protocol: before testing, re-fit each model's per-element energy bias on "
        "this dataset with `dp --pt change-bias -m change` (use training data, not the test set).",
    )
    frames: int = Field(0, ge=0, le=MAX_FRAMES, description="Frames per system to test (0 = all).")
    allow_overlap: bool = Field(
        False,
        description="Test (or re-fit) on data that shares frames with a tested model's training data, on "
        "purpose (e.g. a sanity check). Refused otherwise; allowed rows are marked in the results.",
    )
