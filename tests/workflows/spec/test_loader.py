"""Spec loading: valid specs resolve; every kind of bad input is one line naming the file and YAML path."""

from __future__ import annotations

import copy

import numpy as np
import pytest

from lamflow.workflows.errors import SpecError
from lamflow.workflows.planner import load_spec
from tests.conftest import DEMO_DATA, EXAMPLES, minimal_spec


def test_demo_resolves():
    resolved = load_spec(EXAMPLES / "demo.yaml")
    assert resolved.type_map == ["O", "H", "C", "Ge", "Te"]  # union in order of first appearance
    assert resolved.dataset_paths["gete"] == (DEMO_DATA / "gete/train").resolve()
    assert resolved.dataset_info["molecules"].nframes == 80


def test_relative_paths_are_relative_to_the_spec_file(tmp_path, write_spec):
    (tmp_path / "data").symlink_to(DEMO_DATA)
    spec = minimal_spec()
    for name, sub in (
        ("water", "water/train"),
        ("molecules", "molecules/train"),
        ("gete", "gete/train"),
        ("gete-test", "gete/test"),
    ):
        spec["datasets"][name]["path"] = f"data/{sub}"
    resolved = load_spec(write_spec(spec))
    assert resolved.dataset_paths["water"] == (tmp_path / "data/water/train").resolve()


def _expect(path, message_part: str, yaml_path: str | None):
    with pytest.raises(SpecError) as info:
        load_spec(path)
    err = info.value
    assert err.path == yaml_path, str(err)
    assert message_part in err.message, str(err)
    text = str(err)
    assert "\n" not in text and text.startswith(str(path))
    return err


def edit(mutate):
    spec = minimal_spec()
    mutate(spec)
    return spec


BAD_SPECS = [
    # (mutation, yaml path, message fragment)
    (lambda s: s.update(stpes=1), "stpes", "unknown key 'stpes'"),
    (
        lambda s: s["stages"]["pretrain"]["training"].update(stpes=5),
        "stages.pretrain.training.stpes",
        "did you mean 'steps'?",
    ),
    (
        lambda s: s["stages"]["pretrain"]["heads"]["water"].update(wieght=2),
        "stages.pretrain.heads.water.wieght",
        "did you mean 'weight'?",
    ),
    (
        lambda s: s["stages"]["pretrain"]["training"].update(steps="many"),
        "stages.pretrain.training.steps",
        "expected a whole number (got 'many', text)",
    ),
    (
        lambda s: s["stages"]["pretrain"]["training"].update(steps=0),
        "stages.pretrain.training.steps",
        "must be at least 1 (got 0)",
    ),
    (
        lambda s: s["stages"]["pretrain"]["training"].update(batch_size="big"),
        "stages.pretrain.training.batch_size",
        "expected a whole number from 1 to 1000000, 'auto' or 'auto:N' (got 'big')",
    ),
    (lambda s: s.pop("name"), "name", "required key is missing"),
    (lambda s: s["model"].update(preset="dpa9"), "model.preset", "'dpa9'"),
    (lambda s: s.update(stages={}), "stages", "no stage given"),
    (lambda s: s["datasets"]["water"].update(format="poscar"), "datasets.water.format", "deepmd/npy"),
    (
        lambda s: s["stages"]["pretrain"]["heads"]["water"].update(datasets=["waterr"]),
        "stages.pretrain.heads.water.datasets[0]",
        "unknown dataset 'waterr' (datasets: water, molecules, gete, gete-test; did you mean 'water'?)",
    ),
    (
        lambda s: s["stages"]["finetune"][0]["from"].update(head="gete"),
        "stages.finetune[0].from.head",
        "no pretrain head 'gete' (heads: water, molecules, or 'random')",
    ),
    (
        lambda s: s["stages"]["finetune"][0]["from"].pop("head"),
        "stages.finetune[0].from.head",
        "required for a multi-task pretrain",
    ),
    (
        lambda s: s["stages"]["finetune"][0].update({"from": {"model_file": "x.pth"}}),
        "stages.finetune[0].from.model_file",
        "needs a DeePMD-kit training checkpoint (.pt)",
    ),
    (
        lambda s: s["stages"]["finetune"][0].update({"from": {"model_file": "missing.pt"}}),
        "stages.finetune[0].from.model_file",
        "no such file",
    ),
    (
        lambda s: s["stages"]["finetune"].append(copy.deepcopy(s["stages"]["finetune"][0])),
        "stages.finetune[1].name",
        "duplicate finetune name 'gete'",
    ),
    (lambda s: s["stages"].pop("pretrain"), "stages.finetune[0].from", "no pretrain stage"),
    (
        lambda s: s["stages"]["test"][0].update(models=["pretrain.gete"]),
        "stages.test[0].models[0]",
        "no pretrain model named 'gete' (pretrain models: water, molecules)",
    ),
    (
        lambda s: s["stages"]["test"][1].update(models=["finetune.water"]),
        "stages.test[1].models[0]",
        "no finetune model named 'water' (finetune models: gete)",
    ),
    (
        lambda s: s["stages"]["test"][0].update(models=["scratch.water"]),
        "stages.test[0].models[0]",
        "unknown model 'scratch.water' (models of this spec: pretrain.water, pretrain.molecules, "
        "finetune.gete",
    ),
    (
        lambda s: s["stages"]["test"][0].update(models=["water"]),
        "stages.test[0].models[0]",
        "expected a model reference like pretrain.<head>, finetune.<name> or models.<name> (got 'water')",
    ),
    (
        lambda s: s["stages"]["test"][0].update(change_bias_on="nope"),
        "stages.test[0].change_bias_on",
        "unknown dataset 'nope'",
    ),
    (
        lambda s: s["stages"]["pretrain"]["heads"].update(RANDOM={"datasets": ["gete"]}),
        "stages.pretrain.heads.RANDOM",
        "reserved",
    ),
    (
        lambda s: s["stages"]["pretrain"]["heads"].update({"Water": {"datasets": ["gete"]}}),
        "stages.pretrain.heads",
        "same step key 'water'",
    ),
    (
        lambda s: s["datasets"]["water"].update(path="/no/such/dir"),
        "datasets.water.path",
        "/no/such/dir: does not exist",
    ),
    (
        lambda s: s["datasets"]["water"].update(path=str(DEMO_DATA / "gete/train/gete/set.000")),
        "datasets.water.path",
        "no deepmd/npy system",
    ),
    (
        lambda s: s["datasets"]["water"].update(type_map=["H", "O"]),
        "datasets.water.type_map",
        "conflicts with",
    ),
    (
        lambda s: s["datasets"]["water"].update(format="deepmd/hdf5", type_map=["O", "H"]),
        "datasets.water.type_map",
        "not supported for deepmd/hdf5 datasets",
    ),
    (
        lambda s: s["model"].update(type_map=["O", "H", "C"]),
        "model.type_map",
        "lacks Ge, Te used by dataset 'gete'",
    ),
]


@pytest.mark.parametrize(
    ("mutate", "yaml_path", "fragment"), BAD_SPECS, ids=[case[1] + ":" + case[2][:20] for case in BAD_SPECS]
)
def test_bad_spec(write_spec, mutate, yaml_path, fragment):
    _expect(write_spec(edit(mutate)), fragment, yaml_path)


def test_missing_file(tmp_path):
    _expect(tmp_path / "nope.yaml", "no such file", None)


def test_directory_instead_of_file(tmp_path):
    _expect(tmp_path, "is a directory", None)


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("name: x\ndatasets: [unclosed\n", "invalid YAML: line"),
        ("name: a\nname: b\n", "duplicate key 'name'"),
        ("- just\n- a list\n", "must be a YAML mapping"),
        ("", "must be a YAML mapping"),
    ],
)
def test_bad_yaml(write_spec, text, fragment):
    _expect(write_spec(text), fragment, None)


def test_dataset_without_type_map(tmp_path, write_spec):
    data = tmp_path / "d" / "sys"
    (data / "set.000").mkdir(parents=True)
    (data / "type.raw").write_text("0 1 1\n")
    np.save(data / "set.000/coord.npy", np.zeros((2, 9)))
    np.save(data / "set.000/energy.npy", np.zeros(2))
    np.save(data / "set.000/box.npy", np.zeros((2, 9)))
    spec = minimal_spec()
    spec["datasets"]["extra"] = {"path": str(tmp_path / "d")}
    _expect(write_spec(spec), "has no type_map.raw: set datasets.extra.type_map", "datasets.extra")
    spec["datasets"]["extra"]["type_map"] = ["O"]
    _expect(write_spec(spec), "names 1 types but", "datasets.extra.type_map")
    spec["datasets"]["extra"]["type_map"] = ["Cu", "H"]
    resolved = load_spec(write_spec(spec))
    assert resolved.type_map[-1] == "Cu" and resolved.dataset_formats["extra"].type_map == ["Cu", "H"]


def test_single_head_pretrain_allows_inheriting_the_fitting_net(write_spec):
    spec = minimal_spec()
    spec["stages"]["pretrain"]["heads"] = {"water": {"datasets": ["water"]}}
    spec["stages"]["finetune"][0]["from"] = {}
    spec["stages"]["test"] = []
    assert load_spec(write_spec(spec)).spec.stages.finetune[0].from_.head is None
