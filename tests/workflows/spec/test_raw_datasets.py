"""Raw DFT outputs named in the spec (``format: vasp/outcar`` ..., a path or glob) are converted with dpdata
at validate, once per content, to check them; in the workflow, the ``convert-datasets`` step converts them
again and the other steps read its output. Bad sources are one line."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from lamflow.ops.runtime.files import resolve_input
from lamflow.workflows.api import submit, validate
from lamflow.workflows.errors import SpecError
from lamflow.workflows.settings import Settings
from lamflow.workflows.store.step_cache import content_digest
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

    # converted inside the workflow: the readers took the convert step's output, not a staged copy
    _, plan = validate(write_spec(spec))
    assert plan.steps[0].key == "convert-datasets" and summary.steps["convert-datasets"].phase == "Succeeded"
    for key in ("finetune-h2o", "test-finetune-h2o-on-h2o"):
        step = plan.step(key)
        assert "datasets" not in step.artifacts and step.depends[0] == "convert-datasets"
    converted = resolve_input(run_dir / summary.steps["convert-datasets"].outputs["datasets"])
    assert isinstance(converted, dict) and sorted(converted) == ["h2o", "h2o@test", "h2o@train"]
    assert content_digest(converted["h2o@test"]) == content_digest(plan.dataset_paths["h2o@test"])
    finetune_input = json.loads((run_dir / summary.steps["finetune-h2o"].outputs["input_json"]).read_text())
    systems = finetune_input["training"]["training_data"]["systems"]
    assert systems and all("convert-datasets" in str(Path(s).resolve()) for s in systems)

    # a resubmit reuses everything, the conversion included
    _, again = submit(write_spec(spec), Settings(run_root=tmp_path / "runs"))
    assert {k: s.phase for k, s in again.steps.items()} == {k: "Cached" for k in summary.steps}


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
