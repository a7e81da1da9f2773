"""Parsing DeePMD-kit outputs and filling training inputs with staged system paths."""

from __future__ import annotations

import math

import pytest

from lamflow.ops.common import fill_systems, last_lcurve_row, parse_test_metrics
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


def test_last_lcurve_row(tmp_path):
    lcurve = tmp_path / "lcurve.out"
    lcurve.write_text(
        "# step    rmse_val rmse_trn   rmse_e_val rmse_e_trn  lr\n"
        "# If there is no available reference data, rmse_*_{val,trn} will print nan\n"
        "      1   nan  8.2  nan 0.1  1.0e-3\n"
        "     20   nan  2.0  nan 0.05 1.0e-5\n"
    )
    row = last_lcurve_row(lcurve)
    assert row == {"step": 20.0, "rmse_trn": 2.0, "rmse_e_trn": 0.05, "lr": 1e-5}
    assert not any(math.isnan(v) for v in row.values())


def test_fill_systems_multitask_and_single(tmp_path):
    datasets = {
        "w": DEMO_DATA / "water/train",
        "v": DEMO_DATA / "water/valid",
        "m": DEMO_DATA / "molecules/train",
    }
    formats = {n: {"format": "deepmd/npy", "type_map": None} for n in datasets}
    multi = {
        "model": {"model_dict": {}},
        "training": {
            "data_dict": {
                "a": {"training_data": {"systems": []}, "validation_data": {"systems": []}},
                "b": {"training_data": {"systems": []}, "validation_data": {"systems": []}},
            }
        },
    }
    filled = fill_systems(
        multi,
        {"a": {"train": ["w"], "validation": ["v"]}, "b": {"train": ["m"]}},
        datasets,
        formats,
        tmp_path,
    )
    a, b = filled["training"]["data_dict"]["a"], filled["training"]["data_dict"]["b"]
    assert [p.rsplit("/", 1)[1] for p in a["training_data"]["systems"]] == ["data_0", "data_2"]
    assert a["validation_data"]["systems"][0].endswith("data_3")
    assert "validation_data" not in b  # no validation data given -> no section
    assert multi["training"]["data_dict"]["a"]["training_data"]["systems"] == []  # input not mutated
    single = fill_systems(
        {"model": {}, "training": {"training_data": {"systems": []}}},
        {"t": {"train": ["m"], "validation": []}},
        datasets,
        formats,
        tmp_path,
    )
    assert len(single["training"]["training_data"]["systems"]) == 2
    with pytest.raises(KeyError, match="not staged"):
        fill_systems(multi, {"a": {"train": ["zzz"]}}, datasets, formats, tmp_path)
