"""Training helpers (lamflow.ops.training.common): lcurve parsing and filling inputs with staged systems."""

from __future__ import annotations

import math

import pytest

from lamflow.ops.data.datasets import DatasetFormat
from lamflow.ops.training.checkpoint import latest_checkpoint
from lamflow.ops.training.common import (
    HeadData,
    fill_systems,
    last_lcurve_row,
    training_device,
)
from tests.conftest import DEMO_DATA


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


def test_training_device_from_deepmds_startup_summary(tmp_path):
    log = tmp_path / "train.log"
    cpu = "[2026-11-25 15:58:02,627] DEEPMD INFO    Computing Device:  CPU\n"
    gpu = (
        "[2026-11-25 16:01:00,001] DEEPMD INFO    Computing Device:  CUDA:0\n"
        "[2026-11-25 16:01:00,001] DEEPMD INFO    Device Name:       NVIDIA H100 80GB HBM3\n"
        "[2026-11-25 16:01:00,001] DEEPMD INFO    CUDA_VISIBLE_DEVICES: unset\n"
    )
    log.write_text("$ dp --pt train input.json\n" + cpu)
    assert training_device(log) == "CPU"
    log.write_text(cpu + "[...] DEEPMD INFO    batch 100: trn: rmse = 1.0\n" + gpu)  # restarted on a GPU
    assert training_device(log) == "CUDA:0 (NVIDIA H100 80GB HBM3)"
    log.write_text("Traceback (most recent call last):\n")
    assert training_device(log) == "unknown"
    assert training_device(tmp_path / "missing.log") == "unknown"


def test_fill_systems_multitask_and_single(tmp_path):
    datasets = {
        "w": DEMO_DATA / "water/train",
        "v": DEMO_DATA / "water/valid",
        "m": DEMO_DATA / "molecules/train",
    }
    formats = {n: DatasetFormat() for n in datasets}
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
        {"a": HeadData(train=["w"], validation=["v"]), "b": HeadData(train=["m"])},
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
        {"t": HeadData(train=["m"])},
        datasets,
        formats,
        tmp_path,
    )
    assert len(single["training"]["training_data"]["systems"]) == 2
    with pytest.raises(KeyError, match="not staged"):
        fill_systems(multi, {"a": HeadData(train=["zzz"])}, datasets, formats, tmp_path)


def test_latest_checkpoint_passes_over_one_cut_short_by_a_kill(tmp_path):
    """A run killed while torch wrote model.ckpt-40.pt resumes from model.ckpt-20.pt (found by the slow
    resume test: restarting from the torn file failed with 'failed finding central directory')."""
    import zipfile

    def save(step: int) -> bytes:
        with zipfile.ZipFile(tmp_path / f"model.ckpt-{step}.pt", "w") as z:
            z.writestr("archive/data.pkl", b"x" * 1000)
        return (tmp_path / f"model.ckpt-{step}.pt").read_bytes()

    assert latest_checkpoint(tmp_path) is None
    save(20)
    whole = save(40)
    assert latest_checkpoint(tmp_path) == tmp_path / "model.ckpt-40.pt"
    (tmp_path / "model.ckpt-40.pt").write_bytes(whole[: len(whole) // 2])
    (tmp_path / "model.ckpt-60.pt").write_bytes(b"")
    (tmp_path / "model.ckpt.pt").write_bytes(whole)  # DeePMD-kit's latest-link name is not a step
    assert latest_checkpoint(tmp_path) == tmp_path / "model.ckpt-20.pt"
