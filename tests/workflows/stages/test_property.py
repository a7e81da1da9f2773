"""Property studies (``stages.transfer[].property``): a pretrained descriptor with a new property fitting
net against the same architecture from scratch, tested per component; and every way to get them wrong."""

from __future__ import annotations

import pytest

from lamflow.workflows.api import validate
from lamflow.workflows.compile.deepmd_input import architecture
from lamflow.workflows.errors import SpecError
from lamflow.workflows.spec.model import ModelSpec
from tests.conftest import DEMO_DATA, minimal_spec

BAND = {"dim": 3, "intensive": True, "components": ["lumo", "homo", "gap"]}


def property_spec(study=None, qm9=None, **stages):
    spec = minimal_spec()
    spec["datasets"]["qm9"] = {
        "path": str(DEMO_DATA / "qm9"),
        "split": {"test_fraction": 0.25, "seed": 1},
        "properties": {"band_prop": dict(BAND)},
        **(qm9 or {}),
    }
    spec["stages"]["transfer"] = [
        {
            "name": "qm9",
            "property": "band_prop",
            "models": ["pretrain.molecules"],
            "datasets": ["qm9"],
            "learning_curve": {"sizes": [10, 40], "training": {"steps": 20, "seed": 3}},
            **(study or {}),
        }
    ]
    spec["stages"].update(stages)
    return spec


def test_fine_tunes_get_a_new_property_fitting_net_on_the_pretrained_descriptor(write_spec):
    _, plan = validate(write_spec(property_spec()))
    keys = [s.key for s in plan.steps]
    assert not any(k.endswith(("-unshifted", "-zero-shot")) for k in keys)  # no zero-shot for a property
    tune = plan.step("transfer-qm9-pretrain-molecules-qm9-n40-r1")
    assert (
        tune.params.model_branch == "RANDOM"
    )  # DeePMD-kit: the input's fitting net, the checkpoint's descriptor
    model = tune.params.deepmd_input["model"]
    assert model["descriptor"] == {}
    energy_fitting = architecture(ModelSpec(preset="dpa2-tiny"))[1]  # as wide and deep as the energy one
    assert model["fitting_net"] == {
        "type": "property", "property_name": "band_prop", "task_dim": 3, "intensive": True,
        **{k: energy_fitting[k] for k in ("neuron", "activation_function", "resnet_dt", "precision")
           if k in energy_fitting},
        "seed": 3,
    }  # fmt: skip
    assert energy_fitting["neuron"]
    assert tune.params.deepmd_input["loss"] == {
        "type": "property", "loss_func": "smooth_mae", "metric": ["mae"], "beta": 1.0
    }  # fmt: skip
    scratch = plan.step("transfer-qm9-scratch-qm9-n40-r1")
    assert scratch.params.deepmd_input["model"]["descriptor"]["type"] == "dpa2"
    assert scratch.params.deepmd_input["model"]["fitting_net"] == model["fitting_net"]
    assert scratch.params.deepmd_input["loss"]["type"] == "property"
    test = plan.step("transfer-qm9-scratch-qm9-n40-r1-test")
    assert test.params.property is not None and test.params.property.dim == 3
    assert test.params.dataset == "qm9@test" and test.params.baseline_dataset == "qm9@train"
    assert test.evaluation.property == "band_prop" and test.evaluation.components == ("lumo", "homo", "gap")


def test_the_deepmd_inputs_pass_deepmds_own_argument_check(write_spec):
    from deepmd.utils.argcheck import normalize

    _, plan = validate(write_spec(property_spec()))
    config = plan.step("transfer-qm9-scratch-qm9-n10-r1").params.deepmd_input
    normalized = normalize(config)
    assert normalized["model"]["fitting_net"]["property_name"] == "band_prop"


def fails(write_spec, spec, path: str, *words: str) -> str:
    with pytest.raises(SpecError) as info:
        validate(write_spec(spec))
    message = str(info.value)
    assert path in message, message
    for word in words:
        assert word in message, message
    return message


BAD = [
    ({"study": {"zero_shot": True}}, "stages.transfer[0].zero_shot", "no zero-shot result"),
    ({"study": {"learning_curve": None}}, "stages.transfer[0].learning_curve", "required for a property"),
    ({"study": {"property": "gap"}}, "stages.transfer[0].datasets[0]", "declares band_prop, not 'gap'"),
    (
        {
            "study": {
                "gates": [
                    {
                        "model": "pretrain.molecules",
                        "dataset": "qm9",
                        "at": 40,
                        "metric": "force_rmse",
                        "max": 0.1,
                    }
                ]
            }
        },  # fmt: skip
        "stages.transfer[0].gates[0].metric",
        "force_rmse is an energy metric",
    ),
    (
        {"study": {"learning_curve": {"sizes": [10], "training": {"loss": {"start_pref_e": 1.0}}}}},
        "stages.transfer[0].learning_curve.training.loss",
        "do not apply to a property fit",
    ),
    (
        {"qm9": {"properties": {"band_prop": {**BAND, "dim": 2, "components": None}}}},
        "datasets.qm9.path",
        "shape (80, 3), expected (80, 2)",
    ),  # fmt: skip
    (
        {"qm9": {"properties": {"band_prop": {**BAND, "components": ["a"]}}}},
        "datasets.qm9.properties",
        "components names 1 values; dim is 3",
    ),  # fmt: skip
    (
        {"qm9": {"properties": {"energy": {"dim": 1, "intensive": False}}}},
        "datasets.qm9",
        "a label DeePMD-kit reads",
    ),  # fmt: skip
]


@pytest.mark.parametrize(("change", "path", "words"), BAD, ids=lambda v: str(v)[:40])
def test_bad_property_studies_fail_at_validate_naming_the_yaml_path(write_spec, change, path, words):
    fails(write_spec, property_spec(**change), path, words)


def test_an_energy_stage_on_property_data_is_refused(write_spec):
    spec = property_spec()
    spec["stages"]["test"].append({"models": ["finetune.gete"], "datasets": ["qm9"]})
    fails(write_spec, spec, "stages.test[2].datasets[0]", "'qm9' holds only the properties band_prop",
          "property: band_prop")  # fmt: skip
    spec = property_spec()
    spec["stages"]["finetune"][0]["datasets"] = ["qm9"]
    fails(write_spec, spec, "stages.finetune[0].datasets[0]", "energy model, which needs energy.npy")
    spec = property_spec()
    spec["stages"]["transfer"].append({"name": "energies", "models": ["pretrain.water"], "datasets": ["qm9"]})
    fails(write_spec, spec, "stages.transfer[1].datasets[0]", "holds only the properties")


def test_a_property_study_on_energy_data_is_refused(write_spec):
    spec = property_spec({"datasets": ["gete"]})
    spec["datasets"]["gete"]["split"] = {"test_frames": 4, "seed": 2}
    fails(write_spec, spec, "stages.transfer[0].datasets[0]", "'gete' declares no properties")


def test_a_property_metric_on_an_energy_study_is_refused(write_spec):
    spec = minimal_spec()
    spec["datasets"]["gete"]["split"] = {"test_frames": 4, "seed": 2}
    spec["stages"]["transfer"] = [
        {"name": "e", "models": ["pretrain.water"], "datasets": ["gete"],
         "gates": [{"model": "pretrain.water", "dataset": "gete", "metric": "property_rmse", "max": 1.0}]}
    ]  # fmt: skip
    fails(write_spec, spec, "stages.transfer[0].gates[0].metric", "gives no property metric")


def test_an_extensive_property_declared_intensive_is_refused(write_spec, tmp_path):
    import numpy as np

    from tests.ops.data.test_datasets import make_system

    for k, natoms in enumerate((4, 8, 16)):
        system = make_system(tmp_path / "ext" / f"s{k}", types=(0,) * natoms, nframes=5, pbc=False)
        np.save(system / "set.000/total.npy", natoms * (2.0 + 0.01 * np.arange(5)).reshape(5, 1))
    spec = minimal_spec()
    spec["datasets"]["ext"] = {
        "path": str(tmp_path / "ext"),
        "properties": {"total": {"dim": 1, "intensive": True}},
    }
    message = fails(write_spec, spec, "datasets.ext.properties.total.intensive", "grows with the atom count")
    assert "4 to 16 atoms" in message
    spec["datasets"]["ext"]["properties"]["total"]["intensive"] = False
    validate(write_spec(spec))  # declared extensive: accepted


def test_data_check_reads_declared_properties():
    from tests.conftest import run_cli

    done = run_cli("data", "check", str(DEMO_DATA / "qm9"), "--property", "band_prop:3")
    assert done.returncode == 0, done.stderr
    assert "band_prop (3)" in done.stdout and "240 frames" in done.stdout
    refused = run_cli("data", "check", str(DEMO_DATA / "qm9"))
    assert refused.returncode == 2 and "energy.npy: missing" in refused.stderr
    bad = run_cli("data", "check", str(DEMO_DATA / "qm9"), "--property", "band_prop")
    assert bad.returncode == 2 and "expected NAME:DIM" in bad.stderr


def finetune_property_spec(**ft):
    spec = property_spec()
    spec["stages"]["finetune"].append(
        {"name": "band", "property": "band_prop", "from": {"head": "random"}, "datasets": ["qm9"],
         "training": {"steps": 20}, **ft}
    )  # fmt: skip
    spec["stages"]["test"].append({"models": ["finetune.band"], "datasets": ["qm9"]})
    return spec


def test_a_property_fine_tune_is_a_model_of_the_spec_and_tests_per_component(write_spec):
    _, plan = validate(write_spec(finetune_property_spec()))
    tune = plan.step("finetune-band")
    assert tune.params.model_branch == "RANDOM" and tune.datasets == ("qm9@train",)
    assert tune.params.deepmd_input["model"]["fitting_net"]["type"] == "property"
    assert tune.params.deepmd_input["loss"]["type"] == "property"
    test = plan.step("test-finetune-band-on-qm9")
    assert test.params.property is not None and test.params.property.name == "band_prop"
    assert test.params.dataset == "qm9@test" and test.params.baseline_dataset == "qm9@train"
    assert test.evaluation.components == ("lumo", "homo", "gap")
    energy = plan.step("test-finetune-gete-on-gete-test")
    assert energy.params.property is None and energy.evaluation.property is None


PROPERTY_MODEL_MISUSE = [
    ("tested-on-energy-data", lambda s: s["stages"]["test"].append(
        {"models": ["finetune.band"], "datasets": ["gete-test"]}),
     "stages.test[3].datasets[0]", "'gete-test' declares no properties, not 'band_prop'"),
    ("change-bias", lambda s: s["stages"]["test"].append(
        {"models": ["finetune.band"], "datasets": ["qm9"], "change_bias_on": "gete"}),
     "stages.test[3].change_bias_on", "change-bias re-fits an energy model"),
    ("energy-study-source", lambda s: s["stages"]["transfer"].append(
        {"name": "e", "models": ["finetune.band"], "datasets": ["qm9"], "zero_shot": True}),
     "stages.transfer[1].models[0]", "finetune.band predicts band_prop, not energies and forces"),
    ("energy-fine-tune-source", lambda s: s["stages"]["finetune"].append(
        {"name": "again", "from": {"model": "finetune.band"}, "datasets": ["gete"]}),
     "stages.finetune[2].from.model", "finetune.band predicts band_prop"),
    ("named-head", lambda s: s["stages"]["finetune"][1]["from"].update(head="water"),
     "stages.finetune[1].from.head", "omit from.head"),
]  # fmt: skip


@pytest.mark.parametrize(
    ("name", "change", "path", "words"), PROPERTY_MODEL_MISUSE, ids=lambda v: str(v)[:24]
)
def test_a_property_model_is_refused_where_an_energy_model_is_needed(write_spec, name, change, path, words):
    spec = finetune_property_spec()
    change(spec)
    fails(write_spec, spec, path, words)


def test_a_property_fine_tune_on_datasets_declaring_the_property_differently_is_refused(write_spec):
    spec = finetune_property_spec()
    spec["datasets"]["qm9b"] = {
        **spec["datasets"]["qm9"],
        "properties": {"band_prop": {**BAND, "intensive": False}},
    }
    spec["stages"]["finetune"][1]["datasets"] = ["qm9", "qm9b"]
    fails(
        write_spec,
        spec,
        "stages.finetune[1].datasets[1]",
        "intensive False",
        "one fitting net cannot fit both",
    )


def test_the_promotion_gate_takes_a_property_metric_of_a_tested_property_model(write_spec):
    spec = finetune_property_spec()
    spec["registry"] = {"promote_gate": {"dataset": "qm9", "metric": "property_rmse"}}
    validate(write_spec(spec))
    spec["registry"] = {"promote_gate": {"dataset": "gete-test", "metric": "property_mae"}}
    fails(write_spec, spec, "registry.promote_gate.metric", "no property model of this spec is tested on")
