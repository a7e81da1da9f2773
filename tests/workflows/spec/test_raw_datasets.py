"""Raw DFT outputs named in the spec (``format: vasp/outcar`` ..., a path or glob) are converted with dpdata
at validate, once per content, into the deepmd/npy dataset the steps read; bad sources are one line."""

from __future__ import annotations

import numpy as np
import pytest

from lamflow.workflows.api import submit, validate
from lamflow.workflows.errors import SpecError
from lamflow.workflows.settings import Settings
from tests.conftest import REPO, minimal_spec

DFT = REPO.parent / "shared" / "data" / "dft_outputs"
pytestmark = pytest.mark.skipif(not DFT.exists(), reason="../shared not present")


def raw_spec(**dataset):
    spec = minimal_spec()
    spec["datasets"]["h2o"] = {
        "path": str(DFT / "vasp_outcar_h2o" / "OUTCAR"),
        "format": "vasp/outcar",
        **dataset,
    }
    spec["stages"]["test"] = [{"models": ["pretrain.water"], "datasets": ["h2o"]}]
    return spec


def test_an_outcar_is_converted_once_and_read_as_deepmd_npy(write_spec):
    import dpdata

    resolved, plan = validate(write_spec(raw_spec()))
    folder = plan.dataset_paths["h2o"]
    assert folder.parent.name == "converted" and resolved.dataset_formats["h2o"].format == "deepmd/npy"
    direct = dpdata.LabeledSystem(str(DFT / "vasp_outcar_h2o" / "OUTCAR"), fmt="vasp/outcar")
    converted = dpdata.LabeledSystem(str(next(folder.glob("*"))), fmt="deepmd/npy")
    assert np.allclose(converted["energies"], direct["energies"])
    assert np.allclose(converted["forces"], direct["forces"])
    mtime = folder.stat().st_mtime_ns
    _, again = validate(write_spec(raw_spec()))
    assert again.dataset_paths["h2o"] == folder and folder.stat().st_mtime_ns == mtime  # not converted twice


def test_a_converted_dataset_can_be_split_and_tested(write_spec, tmp_path, fake_dp):
    spec = raw_spec(split={"test_frames": 3})  # 10 frames of water from a VASP OUTCAR, with virials
    spec["stages"]["test"] = [{"models": ["finetune.h2o"], "datasets": ["h2o"]}]
    spec["stages"]["finetune"] = [{"name": "h2o", "from": {"head": "water"}, "datasets": ["h2o"],
                                   "training": {"steps": 5}}]  # fmt: skip
    run_dir, summary = submit(write_spec(spec), Settings(run_root=tmp_path / "runs"))
    assert summary.status == "Succeeded", summary.error
    (row,) = summary.tests
    assert row.dataset == "h2o@test" and row.metrics["frames"] == 3
    assert (
        "virial_rmse_per_atom" in row.metrics and "normalized_virial" in row.metrics
    )  # labels as they exist
    assert any("has virials: the loss fits them" in n for n in summary.notices)


@pytest.mark.parametrize(
    ("dataset", "fragment"),
    [
        ({"format": "qe/pw/scf"}, "not readable as qe/pw/scf"),
        ({"path": str(DFT / "nothing-*.out")}, "the pattern matches nothing"),
        ({"path": str(DFT / "vasp_outcar_h2o" / "missing")}, "no such file"),
    ],
)
def test_bad_raw_sources_are_one_line_naming_the_path(write_spec, dataset, fragment):
    with pytest.raises(SpecError) as caught:
        validate(write_spec(raw_spec(**dataset)))
    assert caught.value.path == "datasets.h2o.path" and fragment in caught.value.message, str(caught.value)
    assert "\n" not in str(caught.value)
