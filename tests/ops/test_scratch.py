"""ScratchOP: `dp --pt train input.json` from a random initialisation, then freeze; as a concurrent-learning
student member, with the frames labelled so far and, from iteration 2 on, its own previous checkpoint."""

from __future__ import annotations

import json
import shutil

import pytest
from dflow.python import FatalError

from lamflow.ops.scratch import ScratchOP, ScratchParams
from lamflow.ops.training.common import HeadData
from lamflow.workflows.compile.deepmd_input import single_task_input
from lamflow.workflows.spec.distill import StudentSpec
from tests.ops.conftest import STAGED, TYPE_MAP, formats


def _params() -> ScratchParams:
    student = StudentSpec(preset="se_e2_a-tiny")
    deepmd_input = single_task_input(student, TYPE_MAP, student.training, with_validation=False)
    return ScratchParams(
        deepmd_input=deepmd_input,
        head_datasets={"water": HeadData(train=["water"])},
        dataset_formats=formats("water"),
    )


def test_a_student_trains_from_scratch_on_its_data_and_the_frames_labelled_so_far(run_op, fake_dp, tmp_path):
    labelled = tmp_path / "labelled"
    shutil.copytree(STAGED["gete"], labelled / "iteration-1")  # stands in for a loop's labels
    out = run_op(ScratchOP, _params(), datasets={"water": STAGED["water"]}, labelled=labelled)
    train = [c for c in fake_dp.calls() if c[1] == "train"][-1]
    assert train == ["--pt", "train", "input.json"]  # no checkpoint to start from
    systems = json.loads(out.input_json.read_text())["training"]["training_data"]["systems"]
    assert any("water" in s for s in systems) and any("iteration-1" in s for s in systems)
    assert json.loads(out.input_json.read_text())["model"]["descriptor"]  # the student's own architecture
    assert out.model.is_file() and out.checkpoint.is_file()


def test_a_student_continues_from_its_own_previous_checkpoint(run_op, fake_dp):
    first = run_op(ScratchOP, _params(), datasets={"water": STAGED["water"]})
    previous = first.checkpoint.resolve()
    run_op(ScratchOP, _params(), datasets={"water": STAGED["water"]}, previous=previous)
    train = [c for c in fake_dp.calls() if c[1] == "train"][-1]
    assert train == ["--pt", "train", "input.json", "--finetune", str(previous), "--use-pretrain-script"]


def test_a_student_refuses_a_frozen_model_as_its_previous_checkpoint(run_op):
    first = run_op(ScratchOP, _params(), datasets={"water": STAGED["water"]})
    with pytest.raises(FatalError, match="continuing needs a DeePMD-kit training checkpoint"):
        run_op(ScratchOP, _params(), datasets={"water": STAGED["water"]}, previous=first.model)
