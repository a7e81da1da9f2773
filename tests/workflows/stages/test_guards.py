"""Scientific guards at validate: no silent test-on-train, no underdetermined bias re-fit; notices for
data the losses leave unused."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest

from lamflow.workflows.api import validate
from lamflow.workflows.errors import SpecError
from lamflow.workflows.stages._guards import undetermined_elements
from tests.conftest import DEMO_DATA, minimal_spec


def refused(write_spec, spec) -> SpecError:
    with pytest.raises(SpecError) as info:
        validate(write_spec(spec))
    return info.value


def test_testing_on_the_finetune_data_is_refused(write_spec):
    spec = minimal_spec()
    spec["stages"]["test"][1]["datasets"] = ["gete"]
    error = refused(write_spec, spec)
    assert error.path == "stages.test[1].datasets[0]"
    assert (
        "shares frames with 'gete', training data of finetune.gete (stages.finetune[0].datasets[0])"
        in str(error)
    )
    assert "the same dataset" in str(error)


def test_same_folder_under_another_name_is_refused(write_spec):
    spec = minimal_spec()
    spec["datasets"]["gete-again"] = {"path": str(DEMO_DATA / "gete/train")}
    spec["stages"]["test"][1]["datasets"] = ["gete-again"]
    assert "the same folder" in str(refused(write_spec, spec))


def test_pretraining_data_counts_for_finetuned_models(write_spec):
    spec = minimal_spec()
    spec["stages"]["test"][1]["datasets"] = ["water"]
    error = refused(write_spec, spec)
    assert "'water', training data of finetune.gete (stages.pretrain.heads.water.datasets[0])" in str(error)


def test_same_content_by_digest_is_refused(write_spec, tmp_path):
    shutil.copytree(DEMO_DATA / "gete/train", tmp_path / "copy")
    spec = minimal_spec()
    spec["datasets"]["gete-copy"] = {"path": str(tmp_path / "copy")}
    spec["stages"]["test"][1]["datasets"] = ["gete-copy"]
    assert "24 of its 24 distinct frames are frames of 'gete' (the same coordinates)" in str(
        refused(write_spec, spec)
    )


def test_allow_overlap_is_explicit_and_marked(write_spec):
    spec = minimal_spec()
    spec["stages"]["test"][1].update(datasets=["gete", "gete-test"], allow_overlap=True)
    _, plan = validate(write_spec(spec))
    marks = {(s.evaluation.model, s.evaluation.dataset): s.evaluation.overlap for s in plan.evaluations}
    assert marks[("finetune.gete", "gete")] is True and marks[("finetune.gete", "gete-test")] is False


def test_change_bias_on_the_test_set_is_refused(write_spec):
    spec = minimal_spec()
    spec["stages"]["test"][0]["change_bias_on"] = "gete-test"
    error = refused(write_spec, spec)
    assert error.path == "stages.test[0].change_bias_on"
    assert (
        "re-fit data 'gete-test' shares frames with test data 'gete-test' (stages.test[0].datasets[0])"
        in str(error)
    )


def test_rank_deficient_bias_refit_is_refused(write_spec):
    """Re-fitting C/H/O energies on two molecule compositions cannot serve water's composition."""
    spec = minimal_spec()
    spec["stages"]["test"][0].update(datasets=["gete-test", "water"], change_bias_on="molecules")
    spec["stages"]["pretrain"]["heads"] = {
        "water": {"datasets": ["gete"]},
        "molecules": {"datasets": ["gete"]},
    }
    error = refused(write_spec, spec)
    assert error.path == "stages.test[0].change_bias_on"
    assert "the 2 composition(s) in 'molecules' do not determine the energy bias of C, H, O" in str(error)
    assert "for the compositions in 'water'" in str(error)


@pytest.mark.parametrize(
    ("refit", "test", "expected"),
    [
        ([{"Ge": 108, "Te": 108}], [{"Ge": 108, "Te": 108}], []),  # the demo: same ratio, determined
        ([{"Ge": 108, "Te": 108}], [{"Ge": 100, "Te": 116}], ["Ge", "Te"]),
        ([{"Ge": 1, "Te": 1}, {"Ge": 2, "Te": 1}], [{"Ge": 5, "Te": 9}], []),  # full rank
        ([{"H": 2, "O": 1}], [{"H": 4, "O": 2, "Cu": 3}], []),  # Cu absent from re-fit: keeps its bias
        ([{"C": 1, "H": 4, "O": 2}, {"C": 3, "H": 3, "O": 4}], [{"C": 2, "H": 8, "O": 4}], []),
    ],
)
def test_undetermined_elements(refit, test, expected):
    assert undetermined_elements(refit, test) == expected


def test_unused_arrays_and_virials_are_noticed(write_spec, tmp_path):
    data = tmp_path / "gete"
    shutil.copytree(DEMO_DATA / "gete/train", data)
    set_dir = next(data.glob("*/set.000"))
    frames = np.load(set_dir / "energy.npy").shape[0]
    np.save(set_dir / "hessian.npy", np.zeros((frames, 4)))
    np.save(set_dir / "aparam.npy", np.zeros((frames, 2)))
    np.save(set_dir / "virial.npy", np.zeros((frames, 9)))
    spec = minimal_spec()
    spec["datasets"]["gete"] = {"path": str(data)}
    _, plan = validate(write_spec(spec))
    assert any(n.startswith("datasets.gete: aparam, hessian present but not used") for n in plan.notices)
    virial = [n for n in plan.notices if "has virials" in n]
    assert virial and virial[0].startswith("stages.finetune[0]: every training system of gete has virials")
    loss = plan.step("finetune-gete").params.deepmd_input["loss"]
    assert (loss["start_pref_v"], loss["limit_pref_v"]) == (0.02, 1.0)  # labels used as they exist
    spec["stages"]["finetune"][0]["training"]["loss"] = {"start_pref_v": 0, "limit_pref_v": 0}  # opting out
    _, plan = validate(write_spec(spec))
    assert not [n for n in plan.notices if "has virials" in n]
    loss = plan.step("finetune-gete").params.deepmd_input["loss"]
    assert (loss["start_pref_v"], loss["limit_pref_v"]) == (0, 0)


def test_pretrain_heads_fit_virials_only_where_every_system_has_them(write_spec, tmp_path):
    data = tmp_path / "gete"
    shutil.copytree(DEMO_DATA / "gete/train", data)
    for set_dir in data.glob("*/set.*"):
        np.save(set_dir / "virial.npy", np.zeros((np.load(set_dir / "energy.npy").shape[0], 9)))
    spec = minimal_spec()
    spec["datasets"]["gete"] = {"path": str(data)}
    spec["stages"]["pretrain"]["heads"]["gete"] = {"datasets": ["gete"]}
    _, plan = validate(write_spec(spec))
    losses = plan.step("pretrain").params.deepmd_input["loss_dict"]
    assert losses["gete"]["start_pref_v"] == 0.02 and losses["water"].get("start_pref_v", 0) == 0
    assert any(
        n.startswith("stages.pretrain.heads.gete: every training system of gete") for n in plan.notices
    )


def test_a_split_keeps_every_array_and_the_notice_sees_it(write_spec, tmp_path):
    data = tmp_path / "gete"
    shutil.copytree(DEMO_DATA / "gete/train", data)
    set_dir = next(data.glob("*/set.000"))
    frames = np.load(set_dir / "energy.npy").shape[0]
    hessian = np.arange(frames * 4, dtype=float).reshape(frames, 4)
    np.save(set_dir / "hessian.npy", hessian)
    spec = minimal_spec()
    spec["datasets"]["gete"] = {"path": str(data), "split": {"test_frames": 4}}
    resolved, plan = validate(write_spec(spec))
    assert any(n.startswith("datasets.gete: hessian present but not used") for n in plan.notices)
    for part in ("train", "test"):
        system = resolved.dataset_info[f"gete@{part}"].systems[0]
        assert system.other_arrays == ("hessian",)
        kept = np.load(next(Path(system.path).glob("set.*/hessian.npy")))
        chosen = next(iter(resolved.splits["gete"].values()))[part]
        np.testing.assert_array_equal(kept, hessian[chosen])  # the same frames, row for row


def test_elements_a_model_never_trained_on_are_flagged(write_spec):
    resolved, plan = validate(write_spec(minimal_spec()))
    marks = {(s.evaluation.model, s.evaluation.dataset): s.evaluation.unlearned for s in plan.evaluations}
    assert marks[("pretrain.water", "gete-test")] == ("Ge", "Te")  # the type map names them: the union's
    assert marks[("finetune.gete", "gete-test")] == ()  # the fine-tune trained on them
    assert any(
        n.startswith("stages.test[0].datasets[0]: pretrain.water never learned Ge, Te") for n in plan.notices
    )
    assert any(
        n.startswith("stages.finetune[0].datasets: pretrain.water never learned Ge, Te") for n in plan.notices
    )


def test_a_teacher_is_checked_against_what_it_trained_on(write_spec):
    spec = minimal_spec()
    spec["stages"]["distill"] = [
        {
            "name": "d",
            "teacher": {"model": "pretrain.water"},
            "explore": {"datasets": ["molecules"], "temperatures": [300], "steps": 10},
        }  # fmt: skip
    ]
    error = refused(write_spec, spec)
    assert error.path == "stages.distill[0].teacher.model"
    assert "the teacher pretrain.water never learned C (trained on water)" in str(error)
    spec["stages"]["distill"][0]["explore"]["datasets"] = ["water"]
    validate(write_spec(spec))  # the same teacher on its own elements
