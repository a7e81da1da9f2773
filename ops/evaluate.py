"""Test step: ``dp --pt test`` of one frozen model on one dataset -> energy/force/virial errors."""

from __future__ import annotations

from pathlib import Path

from dflow.python import OP, OPIO, Artifact, FatalError, OPIOSign, Parameter

from lamflow.ops import files
from lamflow.ops.common import DATASET_INPUTS, dataset_root, parse_test_metrics, run_dp_step, work_dir
from lamflow.ops.dp import test_command


class TestOP(OP):
    """Outputs ``metrics`` ({energy_rmse_per_atom: eV/atom, force_rmse: eV/Å, ...}, plus ``frames``)."""

    __test__ = False  # not a pytest class

    @classmethod
    def get_input_sign(cls):
        return OPIOSign(
            {"dataset": str, "frames": Parameter(int, default=0), "model": Artifact(Path), **DATASET_INPUTS}
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
        argv = test_command(
            Path(op_in["model"]).resolve(),
            systems,
            numb_test=op_in["frames"],
            detail_prefix=f"detail/{files.DETAIL_PREFIX}",
        )
        run_dp_step(argv, cwd, files.TEST_LOG)
        log_text = (cwd / files.TEST_LOG).read_text(encoding="utf-8", errors="replace")
        try:
            metrics = parse_test_metrics(log_text)
        except ValueError as exc:
            raise FatalError(f"{files.TEST_LOG}: {exc}") from exc
        energies = (detail / f"{files.DETAIL_PREFIX}.e.out").read_text().splitlines()
        metrics["frames"] = sum(1 for line in energies if line.strip() and not line.startswith("#"))
        return OPIO({"metrics": metrics, "detail": detail, "log": cwd / files.TEST_LOG})
