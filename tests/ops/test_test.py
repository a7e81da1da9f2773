"""Parsing ``dp test`` output (lamflow.ops.test)."""

from __future__ import annotations

import sys

import pytest
from dflow.python import FatalError

from lamflow.ops.data.datasets import DatasetFormat
from lamflow.ops.test import TestOP, parse_test_metrics
from tests.conftest import DEMO_DATA

DP_TEST_LOG = """\
[2026-11-23 15:09:28,584] DEEPMD INFO    # ---------------output of dp test---------------
[2026-11-23 15:09:28,584] DEEPMD INFO    # testing system : /data/gete/test/gete
[2026-11-23 15:09:33,422] DEEPMD INFO    Energy MAE         : 9.9e+01 eV
[2026-11-23 15:09:33,422] DEEPMD INFO    # ----------weighted average of errors-----------
[2026-11-23 15:09:33,422] DEEPMD INFO    # number of systems : 1
[2026-11-23 15:09:33,422] DEEPMD INFO    Energy MAE         : 4.148781e+01 eV
[2026-11-23 15:09:33,422] DEEPMD INFO    Energy RMSE        : 4.329462e+01 eV
[2026-11-23 15:09:33,422] DEEPMD INFO    Energy MAE/Natoms  : 1.920732e-01 eV
[2026-11-23 15:09:33,422] DEEPMD INFO    Energy RMSE/Natoms : 2.004380e-01 eV
[2026-11-23 15:09:33,422] DEEPMD INFO    Force  MAE         : 3.599119e-01 eV/Å
[2026-11-23 15:09:33,422] DEEPMD INFO    Force  RMSE        : 4.653188e-01 eV/Å
[2026-11-23 15:09:33,422] DEEPMD INFO    Virial RMSE        : 1.5e+00 eV
[2026-11-23 15:09:33,422] DEEPMD INFO    Virial RMSE/Natoms : 7.0e-03 eV
[2026-11-23 15:09:33,423] DEEPMD INFO    # -----------------------------------------------
"""


def test_parse_test_metrics_reads_the_weighted_block():
    m = parse_test_metrics(DP_TEST_LOG)
    assert m["energy_mae"] == pytest.approx(41.48781)  # not the per-system 99 above the block
    assert m["energy_rmse_per_atom"] == pytest.approx(0.200438)
    assert m["force_rmse"] == pytest.approx(0.4653188)
    assert m["virial_rmse_per_atom"] == pytest.approx(7.0e-3)
    assert set(m) == {
        "energy_mae",
        "energy_rmse",
        "energy_mae_per_atom",
        "energy_rmse_per_atom",
        "force_mae",
        "force_rmse",
        "virial_rmse",
        "virial_rmse_per_atom",
    }


def test_parse_test_metrics_rejects_output_without_results():
    with pytest.raises(ValueError, match="weighted average"):
        parse_test_metrics("DEEPMD INFO training...\n")
    with pytest.raises(ValueError, match="no energy or force"):
        parse_test_metrics("# ----------weighted average of errors-----------\n# number of systems : 0\n")


def test_test_step_metrics_and_detail(demo_in_process):
    plan, outputs, calls, root = demo_in_process
    tests = [c for c in calls if c[1] == "test"]
    assert len(tests) == 3
    assert tests[-1][4:] == ["-s", str(DEMO_DATA / "gete/test"), "-n", "0", "-d", "detail/detail"]
    out = outputs["test-finetune-gete-on-gete-test"]
    assert out.metrics["frames"] == 12
    assert 0 < out.metrics["energy_rmse_per_atom"] and 0 < out.metrics["force_rmse"]
    assert {p.name for p in out.detail.iterdir()} >= {"detail.e.out", "detail.f.out", "detail.e_peratom.out"}
    zero_shot = outputs["test-pretrain-water-on-gete-test-change-bias-gete"].metrics
    assert zero_shot["force_rmse"] != out.metrics["force_rmse"], "models differ, so do their errors"


def test_test_step_without_results_fails(run_op, demo_in_process, monkeypatch, tmp_path):
    plan, outputs, calls, root = demo_in_process
    step = plan.step("test-finetune-gete-on-gete-test")
    monkeypatch.setenv("LAMFLOW_DP", f"{sys.executable} -c pass")  # a dp that prints nothing
    with pytest.raises(FatalError, match="no 'weighted average of errors' block"):
        run_op(TestOP, step.params, model=outputs["finetune-gete"].model, datasets=plan.dataset_paths)


def test_the_test_step_records_its_systems_and_the_report_splits_rows_by_them(run_op, demo_in_process):
    import json

    from lamflow.workflows.report.detail import read_detail

    plan, outputs, calls, root = demo_in_process
    out = run_op(
        TestOP,
        plan.step("test-finetune-gete-on-gete-test").params.model_copy(
            update={
                "dataset": "molecules",
                "baseline_dataset": "",
                "dataset_formats": {"molecules": DatasetFormat()},
            }
        ),
        model=outputs["finetune-gete"].model,
        datasets=plan.dataset_paths,
    )
    systems = json.loads((out.detail / "systems.json").read_text())
    assert [(s["system"], s["frames"], s["atoms"]) for s in systems] == [
        ("C1H4O2", 40, 7),
        ("C3H3O4", 40, 10),
    ]
    detail = read_detail(out.detail)
    assert list(detail["energy"]) == ["C1H4O2", "C3H3O4"]  # one colour per system in the parity plot
    assert [len(rows) for rows in detail["force"].values()] == [40 * 7, 40 * 10]
