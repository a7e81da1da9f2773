"""Test step: ``dp --pt test`` of one frozen model on one dataset -> energy/force/virial errors."""

from __future__ import annotations

from pathlib import Path
from typing import Dict  # dflow accepts typing.Dict, not dict[...], in artifact signatures

from dflow.python import OP, OPIO, Artifact, FatalError, OPIOSign, Parameter

from lamflow.ops import files
from lamflow.ops.common import dataset_root, parse_test_metrics, work_dir
from lamflow.ops.dp import DpError, run_dp, test_command


class TestOP(OP):
    """Outputs ``metrics`` ({energy_rmse_per_atom: eV/atom, force_rmse: eV/Å, ...}, plus ``frames``)."""

    __test__ = False  # not a pytest class

    @classmethod
    def get_input_sign(cls):
        return OPIOSign(
            {
                "dataset": str,
                "dataset_formats": dict,
                "frames": Parameter(int, default=0),
                "datasets": Artifact(Dict[str, Path]),
                "model": Artifact(Path),
            }
        )

    @classmethod
    def get_output_sign(cls):
        return OPIOSign({"metrics": dict, "detail": Artifact(Path), "log": Artifact(Path)})

    @OP.exec_sign_check
    def execute(self, op_in: OPIO) -> OPIO:
        cwd = work_dir()
        systems = dataset_root(op_in["dataset"], op_in["datasets"], op_in["dataset_formats"], cwd / "systems")
        detail = cwd / "detail"
        detail.mkdir(exist_ok=True)
        try:
            run_dp(
                test_command(
                    Path(op_in["model"]).resolve(),
                    systems,
                    numb_test=op_in["frames"],
                    detail_prefix=f"detail/{files.DETAIL_PREFIX}",
                ),
                cwd=cwd,
                log_file=files.TEST_LOG,
            )
        except DpError as exc:
            raise FatalError(str(exc)) from exc
        log_text = (cwd / files.TEST_LOG).read_text(encoding="utf-8", errors="replace")
        try:
            metrics = parse_test_metrics(log_text)
        except ValueError as exc:
            raise FatalError(f"{files.TEST_LOG}: {exc}") from exc
        metrics["frames"] = sum(
            1
            for line in (detail / f"{files.DETAIL_PREFIX}.e.out").read_text().splitlines()
            if line.strip() and not line.startswith("#")
        )
        return OPIO({"metrics": metrics, "detail": detail, "log": cwd / files.TEST_LOG})
