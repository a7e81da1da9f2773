"""A property model's test read per component, and the dummy that predicts the train mean
(lamflow.ops.evaluation.properties); the TestOP in property mode against the fake dp."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from dflow.python import FatalError

from lamflow.ops.data.datasets import DatasetFormat
from lamflow.ops.evaluation import properties
from lamflow.ops.evaluation.baseline import worse_than_dummy
from lamflow.ops.test import ALL_PROPERTY_ROWS, PropertyTarget, TestOP, TestParams
from tests.conftest import DEMO_DATA
from tests.fake_dp import save_frozen

QM9 = DEMO_DATA / "qm9"

# as DeePMD-kit 3.2 prints it (deepmd/infer/model_test/property.py, entrypoints/test.py)
LOG = """\
[2026-12-03 12:00:00,000] DEEPMD INFO    # testing system : /d/data_0
[2026-12-03 12:00:00,000] DEEPMD INFO    # number of test data : 2
[2026-12-03 12:00:00,000] DEEPMD INFO    PROPERTY MAE            : 9.000000e+00 units
[2026-12-03 12:00:00,000] DEEPMD INFO    PROPERTY RMSE           : 9.000000e+00 units
[2026-12-03 12:00:00,000] DEEPMD INFO    # ----------weighted average of errors-----------
[2026-12-03 12:00:00,000] DEEPMD INFO    # number of systems : 2
[2026-12-03 12:00:00,000] DEEPMD INFO    PROPERTY MAE            : 2.500000e-01 units
[2026-12-03 12:00:00,000] DEEPMD INFO    PROPERTY RMSE           : 3.535534e-01 units
[2026-12-03 12:00:00,000] DEEPMD INFO    # -----------------------------------------------
"""


def test_the_pooled_errors_come_from_the_weighted_block():
    assert properties.parse_property_metrics(LOG) == {"property_mae": 0.25, "property_rmse": 0.3535534}
    with pytest.raises(ValueError, match="no PROPERTY errors"):
        properties.parse_property_metrics(
            "# ----------weighted average of errors-----------\nEnergy RMSE : 1 eV\n"
        )
    with pytest.raises(ValueError, match="weighted average"):
        properties.parse_property_metrics("nothing\n")


def _detail(folder: Path, name: str, system: str, frame: int, label: list[float], pred: list[float]) -> None:
    np.savetxt(
        folder / name,
        np.stack([label, pred], axis=1),
        header=f"{system} - {frame}: data_property pred_property",
    )


def test_detail_files_are_read_per_system_and_frame_whatever_their_group_suffix(tmp_path):
    _detail(tmp_path, "d.property.out.1", "/x/data_0", 1, [1, 2], [1.5, 2])
    _detail(tmp_path, "d.property.out.0", "/x/data_0", 0, [0, 0], [0, 1])
    _detail(tmp_path, "d.property.out.1.0", "/x/data_1", 0, [3, 3], [3, 2])  # second system: group 1
    read = properties.read_property_detail(tmp_path, "d")
    assert sorted(read) == ["/x/data_0", "/x/data_1"]
    assert read["/x/data_0"].shape == (2, 2, 2)
    assert read["/x/data_0"][0].tolist() == [[0, 0], [0, 1]]  # frame 0: labels, predictions
    labels, predictions = properties.component_errors(read)
    assert labels.shape == predictions.shape == (3, 2)
    (tmp_path / "d.property.out.7").write_text("# not a header\n1 2 3\n")
    with pytest.raises(ValueError, match="not a DeePMD-kit property detail file"):
        properties.read_property_detail(tmp_path, "d")


def test_errors_per_component_against_the_train_mean():
    labels = np.array([[0.0, 10.0], [2.0, 10.0], [4.0, 16.0]])
    good = labels + np.array([[0.1, 0.0], [-0.1, 0.0], [0.1, 0.0]])
    metrics = properties.property_metrics(labels, good, dummy=np.array([2.0, 12.0]))
    assert metrics["property_rmse_0"] == pytest.approx(0.1)
    assert metrics["property_rmse_1"] == 0.0
    assert metrics["dummy_property_rmse_0"] == pytest.approx(np.sqrt(8 / 3))
    assert metrics["dummy_property_rmse_1"] == pytest.approx(np.sqrt(24 / 3))
    assert metrics["normalized_property"] == pytest.approx(0.1 / np.sqrt(8 / 3) / 2)
    assert metrics["normalized_error"] == metrics["normalized_property"]
    assert worse_than_dummy(metrics) == []
    bad = labels + np.array([[5.0, 0.0]] * 3)  # worse than the mean on component 0
    worse = properties.property_metrics(labels, bad, dummy=np.array([2.0, 12.0]))
    assert worse["ratio_property_0"] > 1 and worse["normalized_property"] == pytest.approx(0.5)
    assert worse_than_dummy(worse) == ["property[0]"]


def test_the_train_mean_reads_every_set(tmp_path):
    for k, values in enumerate(([[1.0, 2.0]], [[3.0, 4.0], [5.0, 6.0]])):
        (tmp_path / "s" / f"set.00{k}").mkdir(parents=True)
        np.save(tmp_path / "s" / f"set.00{k}" / "p.npy", np.array(values))
    assert properties.train_mean([tmp_path / "s"], "p", 2).tolist() == [3.0, 4.0]
    with pytest.raises(ValueError, match="q.npy: missing"):
        properties.train_mean([tmp_path / "s"], "q", 2)


def _property_model(path: Path, dim: int = 3) -> Path:
    fitting = {"type": "property", "property_name": "band_prop", "task_dim": dim, "intensive": True}
    save_frozen(path, {"type_map": ["H", "C", "N", "O"], "fitting_net": fitting}, frozen_by_freeze=True)
    return path


def _params(**update) -> TestParams:
    params = TestParams(
        dataset="qm9",
        baseline_dataset="qm9",
        dataset_formats={"qm9": DatasetFormat()},
        property=PropertyTarget(name="band_prop", dim=3, intensive=True),
    )
    return params.model_copy(update=update)


def test_the_test_step_reports_a_property_per_component(run_op, tmp_path):
    out = run_op(TestOP, _params(), model=_property_model(tmp_path / "p.pth"), datasets={"qm9": QM9})
    m = out.metrics
    assert m["frames"] == 240
    assert {f"property_rmse_{i}" for i in range(3)} <= set(m) and "energy_rmse_per_atom" not in m
    labels = np.concatenate([np.load(QM9 / f"data_{k}/set.000000/band_prop.npy") for k in range(3)])
    assert m["dummy_property_rmse_2"] == pytest.approx(float(labels[:, 2].std()), rel=1e-6)
    assert 0 < m["normalized_property"] <= 1
    assert (out.detail / f"detail.{ALL_PROPERTY_ROWS}").is_file()


def test_a_property_test_of_the_wrong_width_or_of_an_energy_model_fails(run_op, tmp_path):
    with pytest.raises(FatalError, match="2 values per frame; band_prop has 3"):
        run_op(TestOP, _params(), model=_property_model(tmp_path / "p2.pth", dim=2), datasets={"qm9": QM9})


def test_the_train_mean_reads_a_deepmd_hdf5_file_too(tmp_path):
    import h5py

    with h5py.File(tmp_path / "d.h5", "w") as h5:
        for k, values in enumerate(([[1.0]], [[3.0], [5.0]])):
            h5[f"sys{k}/type.raw"] = np.array([0])
            h5[f"sys{k}/set.000/p.npy"] = np.array(values)
    assert properties.train_mean([tmp_path / "d.h5"], "p", 1).tolist() == [3.0]
    with pytest.raises(ValueError, match=r"d.h5#/sys0/set.000/q.npy: missing"):
        properties.train_mean([tmp_path / "d.h5"], "q", 1)
