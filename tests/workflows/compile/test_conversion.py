"""Raw-format datasets are converted inside the workflow: one convert-datasets step, whose output the steps
that read those datasets (their parts and subsets) take instead of staged copies."""

from __future__ import annotations

import pytest

from lamflow.ops.convert import ConvertOP
from lamflow.workflows.api import validate
from lamflow.workflows.compile.conversion import CONVERT_STEP
from lamflow.workflows.compile.dflow_workflow import staging_requests
from lamflow.workflows.compile.plan import ConvertedDatasets, DatasetBundle
from lamflow.workflows.store.step_cache import cache_keys
from tests.conftest import REPO, minimal_spec

DFT = REPO.parent / "shared" / "data" / "dft_outputs"
pytestmark = pytest.mark.skipif(not DFT.exists(), reason="../shared not present")


def mixed_spec():
    """Pretrain reads a deepmd/npy dataset and a raw one; QE outputs (with their inputs) are tested."""
    spec = minimal_spec()
    spec["datasets"]["h2o"] = {"path": str(DFT / "vasp_outcar_h2o/OUTCAR"), "format": "vasp/outcar",
                               "split": {"test_frames": 2}}  # fmt: skip
    spec["datasets"]["qe"] = {"path": str(DFT / "qe_pw_scf/*.out"), "format": "qe/pw/scf"}
    spec["model"]["type_map"] = ["O", "H", "C", "Ge", "Te", "Al"]
    spec["stages"]["pretrain"]["heads"]["water"]["datasets"] = ["water", "h2o"]
    spec["stages"]["test"].append({"models": ["pretrain.water"], "datasets": ["qe"]})
    return spec


def test_one_step_converts_every_raw_dataset_and_its_readers_take_its_output(write_spec):
    resolved, plan = validate(write_spec(mixed_spec()))
    convert = plan.steps[0]
    assert (
        convert.key == CONVERT_STEP and convert.op is ConvertOP and plan.origins[CONVERT_STEP] == "datasets"
    )
    jobs = convert.params.datasets
    assert sorted(jobs) == ["h2o", "qe"] and jobs["h2o"].split is not None and jobs["qe"].split is None
    # each QE output travels with the pw.x input dpdata reads beside it, under its own name
    assert [[f.name for f in group] for group in jobs["qe"].sources] == [
        ["01.out", "01.in"],
        ["Al.out", "Al.in"],
    ]
    assert sum(jobs["h2o"].systems.values()) == 10

    pretrain = plan.step("pretrain")
    assert pretrain.artifacts["datasets"] == DatasetBundle(("water", "molecules"))
    assert pretrain.artifacts["converted"] == ConvertedDatasets(CONVERT_STEP, "datasets", ("h2o@train",))
    assert pretrain.depends == [CONVERT_STEP]
    assert pretrain.params.head_datasets["water"].train == ["water", "h2o@train"]  # one head, read from both
    (test_qe,) = [s for s in plan.steps if s.evaluation and s.evaluation.dataset == "qe"]
    assert set(test_qe.artifacts) == {"model", "converted"}

    # nothing converted is staged; the sources are, once
    staged = staging_requests(plan)
    assert all(not any(n.startswith(("h2o", "qe")) for n in r) for k, r in staged.items()
               if k != "datasets:" + ",".join(convert.artifacts["sources"].names))  # fmt: skip
    assert sorted(resolved.conversions) == ["h2o", "qe"]
    assert plan.record()["steps"][1]["artifacts"]["converted"]["names"] == ["h2o@train"]


def test_reader_cache_keys_hash_the_converted_content_not_the_conversion_step(write_spec, tmp_path):
    """Changing one raw dataset reruns the conversion, and only the steps that read that dataset."""
    spec = mixed_spec()
    _, plan = validate(write_spec(spec))
    before = cache_keys(plan)
    import shutil

    copy = tmp_path / "qe"
    shutil.copytree(DFT / "qe_pw_scf", copy)
    (copy / "Al.out").unlink()  # qe now holds one calculation instead of two
    spec["datasets"]["qe"]["path"] = str(copy / "*.out")
    _, changed = validate(write_spec(spec))
    after = cache_keys(changed)
    rerun = sorted(k for k in before if before[k] != after.get(k))
    assert CONVERT_STEP in rerun and "pretrain" not in rerun
    assert all(k == CONVERT_STEP or "on-qe" in k for k in rerun), rerun


def test_a_spec_without_raw_datasets_has_no_conversion_step(write_spec):
    _, plan = validate(write_spec(minimal_spec()))
    assert CONVERT_STEP not in {s.key for s in plan.steps}
    assert not any(isinstance(a, ConvertedDatasets) for s in plan.steps for a in s.artifacts.values())
