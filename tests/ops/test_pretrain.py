"""PretrainOP: writes the DeePMD-kit input with the staged systems and runs `dp --pt train` once."""

from __future__ import annotations

import json

import pytest
from dflow.python import OPIO, FatalError

from lamflow.ops.pretrain import PretrainOP, PretrainParams
from lamflow.ops.training.common import HeadData
from tests.ops.conftest import STAGED, formats


def test_multitask_pretrain_of_the_demo(demo_in_process):
    plan, outputs, calls, root = demo_in_process
    out = outputs["pretrain"]
    assert calls[0][:3] == ["--pt", "train", "input.json"] and len(calls[0]) == 3
    written = json.loads(out.input_json.read_text())
    water = written["training"]["data_dict"]["water"]
    assert [s.rsplit("/", 1)[1] for s in water["training_data"]["systems"]] == ["data_0", "data_2"]
    assert water["validation_data"]["systems"][0].endswith("water/valid/data_3")
    assert "validation_data" not in written["training"]["data_dict"]["molecules"]
    assert out.checkpoint.name == "model.ckpt.pt" and out.checkpoint.resolve().name == "model.ckpt-200.pt"
    assert out.lcurve_last["step"] == 200 and "rmse_e_val_water" in out.lcurve_last
    assert out.log.read_text().startswith("$ ") and out.device == "CPU"


def test_single_task_pretrain_and_failing_dp(run_op, fake_dp, monkeypatch):
    from lamflow.workflows.compile.deepmd_input import single_task_input
    from lamflow.workflows.spec.model import ModelSpec
    from lamflow.workflows.spec.training import TrainingSpec

    inp = single_task_input(
        ModelSpec(preset="dpa2-tiny"), ["Ge", "Te"], TrainingSpec(steps=4, save_freq=2), with_validation=True
    )
    params = PretrainParams(
        deepmd_input=inp,
        head_datasets={"gete": HeadData(train=["gete"], validation=["gete-test"])},
        dataset_formats=formats("gete", "gete-test"),
    )
    out = run_op(PretrainOP, params, datasets=STAGED)
    assert out.checkpoint.resolve().name == "model.ckpt-4.pt"
    assert (out.checkpoint.parent / "model.ckpt-2.pt").exists(), "checkpoints every save_freq steps"
    assert set(out.lcurve_last) >= {"step", "rmse_e_val", "rmse_f_trn", "lr"}
    monkeypatch.setenv("LAMFLOW_FAKE_DP_FAIL", "train")
    with pytest.raises(FatalError, match=r"exited with 1 .*train failed"):
        run_op(PretrainOP, params, datasets=STAGED)


def test_invalid_input_fails_the_step_naming_the_field(tmp_path, monkeypatch):
    """dflow checks plain types; the op's Input model then checks the contents and names the field."""
    monkeypatch.chdir(tmp_path)
    op_in = {
        "deepmd_input": {},
        "head_datasets": {"a": {"train": []}},
        "dataset_formats": {},
        "datasets": STAGED,
    }
    with pytest.raises(
        FatalError, match=r"pretrain: invalid step input: head_datasets\.a\.train: List should"
    ):
        PretrainOP().execute(OPIO(op_in))
