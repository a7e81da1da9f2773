"""Train/test splits of a dataset: disjoint, reproducible parts written once; training stages read the
train part, tests the test part; bad splits refused with the YAML path and the system."""

from __future__ import annotations

import json

import numpy as np
import pytest

from lamflow.ops.data.split import SplitRule, split_indices
from lamflow.workflows.api import validate
from lamflow.workflows.errors import SpecError
from tests.conftest import DEMO_DATA, minimal_spec


def split_spec(**split):
    spec = minimal_spec()
    spec["datasets"]["gete"]["split"] = split or {"test_fraction": 0.25, "seed": 3}
    spec["stages"]["test"][1]["datasets"] = ["gete"]  # the fine-tuned model on its own data's test part
    spec["stages"]["test"][0]["change_bias_on"] = "gete"
    spec["stages"]["test"][0]["datasets"] = ["gete"]
    return spec


def test_indices_are_disjoint_complete_and_reproducible():
    rule = SplitRule(test_fraction=0.25, seed=7)
    train, test = split_indices(20, rule, 0)
    assert len(test) == 5 and sorted(train + test) == list(range(20)) and not set(train) & set(test)
    assert split_indices(20, rule, 0) == (train, test)
    assert split_indices(20, SplitRule(test_fraction=0.25, seed=8), 0) != (train, test)
    assert split_indices(20, rule, 1) != (train, test)  # each system draws its own frames
    assert len(split_indices(20, SplitRule(test_frames=3), 0)[1]) == 3
    with pytest.raises(ValueError, match="leaves the train part empty"):
        split_indices(3, SplitRule(test_frames=3), 0)


def test_training_reads_the_train_part_and_tests_the_test_part(write_spec):
    resolved, plan = validate(write_spec(split_spec()))
    assert {"gete@train", "gete@test"} <= set(plan.dataset_paths)
    finetune = plan.step("finetune-gete")
    assert finetune.params.head_datasets["gete"].train == ["gete@train"]
    assert finetune.datasets == ("gete@train",)
    test = plan.step("test-finetune-gete-on-gete")
    assert test.params.dataset == "gete@test" and test.evaluation.dataset == "gete@test"
    bias = plan.step("change-bias-pretrain-water-on-gete")
    assert bias.params.dataset == "gete@train"
    # the parts hold the original frames, disjoint, and the split is recorded
    whole = np.load(next((DEMO_DATA / "gete/train").glob("*/set.000/coord.npy")))
    parts = {
        p: np.load(next(plan.dataset_paths[f"gete@{p}"].glob("*/set.000/coord.npy")))
        for p in ("train", "test")
    }
    assert len(parts["train"]) + len(parts["test"]) == len(whole) and len(parts["test"]) == round(
        0.25 * len(whole)
    )
    record = next(iter(plan.record()["splits"]["gete"].values()))
    assert np.array_equal(parts["test"], whole[record["test"]])
    assert np.array_equal(parts["train"], whole[record["train"]])
    assert resolved.splits == plan.splits


def test_the_same_split_is_written_once(write_spec):
    _, first = validate(write_spec(split_spec()))
    _, again = validate(write_spec(split_spec()))
    assert first.dataset_paths["gete@test"] == again.dataset_paths["gete@test"]
    _, other = validate(write_spec(split_spec(test_fraction=0.25, seed=4)))
    assert other.dataset_paths["gete@test"] != first.dataset_paths["gete@test"]


@pytest.mark.parametrize(
    ("split", "words"),
    [
        ({"test_frames": 1000}, "leaves the train part empty"),
        ({"test_fraction": 0.25, "test_frames": 2}, "exactly one of test_fraction or test_frames"),
        ({"test_fraction": 1.5}, "less than 1"),
    ],
)
def test_bad_splits_are_refused(write_spec, split, words):
    with pytest.raises(SpecError) as info:
        validate(write_spec(split_spec(**split)))
    assert info.value.path.startswith("datasets.gete.split") and words in str(info.value)


def test_a_split_part_and_a_dataset_of_that_name_stay_apart_on_argo():
    from lamflow.workflows.argo.render import input_parameter

    assert input_parameter("datasets:gete@test") == "input-datasets-gete--test"
    assert input_parameter("datasets:gete-test") == "input-datasets-gete-test"


def test_a_run_tests_on_the_test_part(write_spec, tmp_path, fake_dp):
    from lamflow.workflows import api
    from lamflow.workflows.settings import Settings

    spec = split_spec()
    spec["stages"]["pretrain"]["training"] = {"steps": 2}
    _, summary = api.submit(write_spec(spec), Settings(), run_dir=tmp_path / "run")
    assert summary.status == "Succeeded", summary.error
    rows = {(t.model, t.dataset): t.metrics for t in summary.tests}
    test_frames = len(np.load(next(plan_paths(tmp_path, "gete@test"))))
    assert rows[("finetune.gete", "gete@test")]["frames"] == test_frames
    plan = json.loads((tmp_path / "run" / "plan.json").read_text())
    assert sum(len(r["test"]) for r in plan["splits"]["gete"].values()) == test_frames


def plan_paths(tmp_path, part):
    from lamflow.workflows.api import validate

    _, plan = validate(tmp_path / "spec.yaml")
    return plan.dataset_paths[part].glob("*/set.000/energy.npy")
