"""Fine-tune step: ``dp --pt train --finetune CKPT`` then ``dp --pt freeze`` of the result."""

from __future__ import annotations

from pathlib import Path

from dflow.python import OP, OPIO, Artifact, FatalError, OPIOSign, Parameter

from lamflow.ops import files
from lamflow.ops.common import run_dp_step, work_dir
from lamflow.ops.dp import freeze_command, train_command
from lamflow.ops.pretrain import TRAIN_INPUT_SIGN, TRAIN_OUTPUT_SIGN, train_outputs, write_training_input


class FinetuneOP(OP):
    """Fine-tune from a training checkpoint (``base_checkpoint``, a .pt file).

    ``model_branch``: head of a multi-task checkpoint to start from, ``RANDOM`` for a fresh fitting net,
    or empty for a single-task checkpoint's own fitting net. The model section comes from the checkpoint
    (``--use-pretrain-script``); only its ``type_map`` is taken from our input.
    """

    @classmethod
    def get_input_sign(cls):
        return OPIOSign(
            {
                **TRAIN_INPUT_SIGN,
                "model_branch": Parameter(str, default=""),
                "base_checkpoint": Artifact(Path),
            }
        )

    @classmethod
    def get_output_sign(cls):
        return OPIOSign({**TRAIN_OUTPUT_SIGN, "model": Artifact(Path), "freeze_log": Artifact(Path)})

    @OP.exec_sign_check
    def execute(self, op_in: OPIO) -> OPIO:
        cwd = work_dir()
        base = Path(op_in["base_checkpoint"])
        if base.suffix != ".pt":
            raise FatalError(f"{base.name}: fine-tuning needs a DeePMD-kit training checkpoint (.pt)")
        write_training_input(op_in, cwd)
        branch = op_in["model_branch"] or None
        argv = train_command(
            files.INPUT_JSON, finetune=base.resolve(), model_branch=branch, use_pretrain_script=True
        )
        run_dp_step(argv, cwd, files.TRAIN_LOG)
        run_dp_step(freeze_command(files.FROZEN_MODEL), cwd, files.FREEZE_LOG)
        return OPIO(
            {**train_outputs(cwd), "model": cwd / files.FROZEN_MODEL, "freeze_log": cwd / files.FREEZE_LOG}
        )
