"""FinetuneOP: `dp --pt train --finetune CKPT --model-branch HEAD --use-pretrain-script`, then freeze."""

from __future__ import annotations

import json

import pytest
from dflow.python import FatalError

from lamflow.ops.finetune import FinetuneOP


def test_finetune_from_a_pretrain_head(demo_in_process):
    plan, outputs, calls, root = demo_in_process
    pretrain_ckpt = str(outputs["pretrain"].checkpoint.resolve())
    train = [c for c in calls if c[1] == "train"][1]
    assert train == [
        "--pt", "train", "input.json", "--finetune", pretrain_ckpt, "--model-branch", "water",
        "--use-pretrain-script",
    ]  # fmt: skip
    out = outputs["finetune-gete"]
    assert out.model.name == "model.pth" and out.freeze_log.exists()
    written = json.loads(out.input_json.read_text())
    assert written["model"] == {"type_map": ["O", "H", "C", "Ge", "Te"], "descriptor": {}, "fitting_net": {}}
    assert written["training"]["training_data"]["systems"][0].endswith("gete/train/gete")


def test_finetune_refuses_a_frozen_model(run_op, demo_in_process):
    plan, outputs, calls, root = demo_in_process
    step = plan.step("finetune-gete")
    with pytest.raises(FatalError, match="needs a DeePMD-kit training checkpoint"):
        run_op(
            FinetuneOP,
            step.params,
            datasets=plan.dataset_paths,
            base_checkpoint=outputs["freeze-water"].model,
        )


def test_a_loop_member_continues_from_its_own_previous_checkpoint(run_op, demo_in_process, fake_dp):
    """init_from_previous: `previous` replaces the base checkpoint and its head (the member's own
    single-task checkpoint keeps its fitting net: no --model-branch)."""
    plan, outputs, calls, root = demo_in_process
    step = plan.step("finetune-gete")
    previous = outputs["finetune-gete"].checkpoint.resolve()
    out = run_op(
        FinetuneOP,
        step.params,
        datasets=plan.dataset_paths,
        base_checkpoint=outputs["pretrain"].checkpoint,
        previous=previous,
    )
    train = [c for c in fake_dp.calls() if c[1] == "train"][-1]
    assert train == ["--pt", "train", "input.json", "--finetune", str(previous), "--use-pretrain-script"]
    assert out.model.is_file()
