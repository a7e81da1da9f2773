"""Fine-tune step: ``dp --pt train --finetune CKPT`` then ``dp --pt freeze`` of the result."""

from __future__ import annotations

from pathlib import Path
from typing import Dict  # dflow accepts typing.Dict, not dict[...], in artifact signatures

from dflow.python import OP, OPIO, Artifact, FatalError, OPIOSign, Parameter

from lamflow.ops import files
from lamflow.ops.common import fill_systems, work_dir, write_json
from lamflow.ops.dp import DpError, freeze_command, run_dp, train_command
from lamflow.ops.pretrain import TRAIN_OUTPUT_SIGN, train_outputs


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
                "deepmd_input": dict,
                "head_datasets": dict,
                "dataset_formats": dict,
                "model_branch": Parameter(str, default=""),
                "datasets": Artifact(Dict[str, Path]),
                "base_checkpoint": Artifact(Path),
            }
        )

    @classmethod
    def get_output_sign(cls):
        return OPIOSign({**TRAIN_OUTPUT_SIGN, "model": Artifact(Path), "freeze_log": Artifact(Path)})

    @OP.exec_sign_check
    def execute(self, op_in: OPIO) -> OPIO:
        cwd = work_dir()
        deepmd_input = fill_systems(
            op_in["deepmd_input"],
            op_in["head_datasets"],
            op_in["datasets"],
            op_in["dataset_formats"],
            cwd / "systems",
        )
        write_json(cwd / files.INPUT_JSON, deepmd_input)
        base = Path(op_in["base_checkpoint"])
        if base.suffix != ".pt":
            raise FatalError(f"{base.name}: fine-tuning needs a DeePMD-kit training checkpoint (.pt)")
        try:
            run_dp(
                train_command(
                    files.INPUT_JSON,
                    finetune=base.resolve(),
                    model_branch=op_in["model_branch"] or None,
                    use_pretrain_script=True,
                ),
                cwd=cwd,
                log_file=files.TRAIN_LOG,
            )
            run_dp(freeze_command(files.FROZEN_MODEL), cwd=cwd, log_file=files.FREEZE_LOG)
        except DpError as exc:
            raise FatalError(str(exc)) from exc
        return OPIO(
            {**train_outputs(cwd), "model": cwd / files.FROZEN_MODEL, "freeze_log": cwd / files.FREEZE_LOG}
        )
