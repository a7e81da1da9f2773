"""Stage ``transfer``: zero-shot (unshifted and bias re-fitted), nested learning-curve subsets of the train
part fine-tuned in parallel, from-scratch baselines on the same subsets, all tested on the same test part."""

from __future__ import annotations

import numpy as np
import pytest

from lamflow.ops.data.split import subset_indices
from lamflow.workflows.api import validate
from lamflow.workflows.errors import SpecError
from tests.conftest import DEMO_DATA, minimal_spec


def transfer_spec(**study):
    spec = minimal_spec()
    spec["datasets"]["gete"]["split"] = {"test_frames": 4, "seed": 2}
    spec["stages"]["test"] = [{"models": ["finetune.gete"], "datasets": ["gete-test"]}]
    spec["stages"]["transfer"] = [
        {
            "name": "study",
            "models": ["pretrain.water", "pretrain.molecules"],
            "datasets": ["gete"],
            "learning_curve": {"sizes": [2, 8], "repeats": 2, "training": {"steps": 20, "seed": 5}},
            **study,
        }
    ]
    return spec


def test_subsets_are_nested_per_repeat_and_reproducible():
    small, large = subset_indices([10, 6], 4, 1, 7), subset_indices([10, 6], 12, 1, 7)
    assert sum(map(len, small)) == 4 and sum(map(len, large)) == 12
    assert all(set(a) <= set(b) for a, b in zip(small, large, strict=True))  # a curve adds data
    assert subset_indices([10, 6], 4, 1, 7) == small
    assert subset_indices([10, 6], 4, 2, 7) != small  # another repeat, another subset
    with pytest.raises(ValueError, match="17 frames asked for, the train part has 16"):
        subset_indices([10, 6], 17, 1, 7)


def test_the_study_plans_zero_shot_curves_and_scratch(write_spec):
    _, plan = validate(write_spec(transfer_spec()))
    keys = [s.key for s in plan.steps]
    prefix = "transfer-study-pretrain-water-gete"
    for suffix in ("unshifted", "zero-shot", "n2-r1", "n2-r2", "n8-r1", "n8-r2", "n8-r2-test"):
        assert f"{prefix}-{suffix}" in keys
    assert "change-bias-pretrain-water-on-gete" in keys
    scratch = [k for k in keys if "-scratch-" in k and not k.endswith("-test")]
    assert scratch == [f"transfer-study-scratch-gete-n{n}-r{r}" for n in (2, 8) for r in (1, 2)]  # shared
    # fine-tunes start from the pretraining checkpoint's head, on the subset, with the repeat's seed
    tune = plan.step(f"{prefix}-n8-r2")
    assert tune.params.model_branch == "water" and tune.depends == ["pretrain"]
    assert tune.datasets == ("gete@train-n8-r2",)
    assert tune.params.deepmd_input["training"]["seed"] == 6
    assert tune.params.deepmd_input["training"]["numb_steps"] == 20
    # scratch: the spec's architecture in full, the same subsets
    base = plan.step("transfer-study-scratch-gete-n8-r2")
    assert base.params.deepmd_input["model"]["descriptor"]["type"] == "dpa2" and base.depends == []
    assert base.datasets == tune.datasets
    # every test reads the test part; the dummy model is fitted on the train part
    for key in (
        f"{prefix}-unshifted",
        f"{prefix}-zero-shot",
        f"{prefix}-n2-r1-test",
        "transfer-study-scratch-gete-n2-r1-test",
    ):
        test = plan.step(key)
        assert (test.params.dataset, test.params.baseline_dataset) == ("gete@test", "gete@train")
    zero = plan.step(f"{prefix}-zero-shot").evaluation
    assert (zero.study, zero.protocol, zero.change_bias_on) == ("study", "zero-shot", "gete")
    point = plan.step("transfer-study-scratch-gete-n8-r1-test").evaluation
    assert (point.model, point.protocol, point.train_frames, point.repeat) == ("scratch", "scratch", 8, 1)


def test_subsets_come_from_the_train_part_only_and_are_recorded(write_spec):
    _, plan = validate(write_spec(transfer_spec()))
    record = plan.record()
    test_frames = set(next(iter(record["splits"]["gete"].values()))["test"])
    for name in ("gete@train-n2-r1", "gete@train-n8-r2"):
        chosen = record["subsets"][name]
        assert sum(map(len, chosen.values())) == int(name.split("-n")[1].split("-")[0])
        coords = np.load(next(plan.dataset_paths[name].glob("*/set.000/coord.npy")))
        train = np.load(next(plan.dataset_paths["gete@train"].glob("*/set.000/coord.npy")))
        assert np.array_equal(coords, train[next(iter(chosen.values()))])
    whole = np.load(next((DEMO_DATA / "gete/train").glob("*/set.000/coord.npy")))
    held_out = whole[sorted(test_frames)]
    for name in record["subsets"]:
        coords = np.load(next(plan.dataset_paths[name].glob("*/set.000/coord.npy")))
        assert not any(np.array_equal(c, h) for c in coords for h in held_out)  # never a test frame
    (system,) = record["subsets"]["gete@train-n2-r1"]  # one system: gete/train's, as the split names it
    assert set(record["subsets"]["gete@train-n2-r1"][system]) <= set(
        record["subsets"]["gete@train-n8-r1"][system]
    )


def test_without_learning_curve_only_zero_shot(write_spec):
    spec = transfer_spec(learning_curve=None)
    _, plan = validate(write_spec(spec))
    keys = [s.key for s in plan.steps if s.key.startswith("transfer-")]
    assert keys == [
        f"transfer-study-pretrain-{h}-gete-{p}"
        for h in ("water", "molecules")
        for p in ("unshifted", "zero-shot")
    ]


def frozen_model(path, type_map):
    from tests.fake_dp import save_frozen

    save_frozen(path, {"type_map": type_map, "descriptor": {"type": "dpa2"}}, frozen_by_freeze=True)
    return path


def test_a_frozen_external_model_is_studied_zero_shot_only(write_spec, fake_dp, tmp_path):
    spec = transfer_spec()
    spec["models"] = {"ext": {"file": str(frozen_model(tmp_path / "ext.pth", ["Ge", "Te", "O", "H"]))}}
    spec["stages"]["transfer"][0]["models"] = ["models.ext"]
    with pytest.raises(
        SpecError, match=r"models.ext has no training checkpoint: a learning curve fine-tunes"
    ):
        validate(write_spec(spec))
    spec["stages"]["transfer"][0]["learning_curve"] = None
    _, plan = validate(write_spec(spec))  # zero-shot of a released frozen model: the first thing one does
    assert plan.step("transfer-study-models-ext-gete-zero-shot").evaluation.model == "models.ext"
    assert (
        plan.step("transfer-study-models-ext-gete-unshifted").artifacts["model"].path == tmp_path / "ext.pth"
    )


def test_an_element_outside_the_model_type_map_is_refused(write_spec, fake_dp, tmp_path):
    spec = transfer_spec(learning_curve=None)
    spec["models"] = {"ext": {"file": str(frozen_model(tmp_path / "ext.pth", ["O", "H"]))}}
    spec["stages"]["transfer"][0]["models"] = ["models.ext"]
    with pytest.raises(SpecError) as caught:
        validate(write_spec(spec))
    assert (
        "stages.transfer[0].datasets[0]: models.ext knows only O, H: 'gete' has Ge, Te outside its type map, "
        "so it cannot predict them; pretrain with data holding them" in str(caught.value)
    )  # a frozen model: it cannot be fine-tuned, so that is not offered
