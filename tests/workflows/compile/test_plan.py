"""Spec -> plan: step keys, dependencies and the DeePMD-kit inputs the steps receive."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from lamflow.ops.dp import RANDOM_BRANCH
from lamflow.workflows.compile.plan import LocalFile, StepOutput
from lamflow.workflows.errors import SpecError
from lamflow.workflows.planner import build_plan, load_spec
from tests.conftest import EXAMPLES, minimal_spec


def plan_of(write_spec, spec):
    return build_plan(load_spec(write_spec(spec)))


def test_demo_keys_and_dependencies():
    plan = build_plan(load_spec(EXAMPLES / "demo.yaml"))
    assert {s.key: s.depends for s in plan.steps} == {
        "pretrain": [],
        "freeze-water": ["pretrain"],
        "freeze-molecules": ["pretrain"],
        "finetune-gete": ["pretrain"],
        "change-bias-pretrain-water-on-gete": ["freeze-water"],
        "test-pretrain-water-on-gete-test-change-bias-gete": ["change-bias-pretrain-water-on-gete"],
        "change-bias-pretrain-molecules-on-gete": ["freeze-molecules"],
        "test-pretrain-molecules-on-gete-test-change-bias-gete": ["change-bias-pretrain-molecules-on-gete"],
        "test-finetune-gete-on-gete-test": ["finetune-gete"],
    }
    # every dependency precedes its dependant
    order = [s.key for s in plan.steps]
    assert all(order.index(d) < order.index(s.key) for s in plan.steps for d in s.depends)
    assert [t.key for t in plan.evaluations] == [
        "test-pretrain-water-on-gete-test-change-bias-gete",
        "test-pretrain-molecules-on-gete-test-change-bias-gete",
        "test-finetune-gete-on-gete-test",
    ]


def test_keys_are_stable_across_compiles():
    first = build_plan(load_spec(EXAMPLES / "demo.yaml"))
    second = build_plan(load_spec(EXAMPLES / "demo.yaml"))
    assert first == second


def test_multitask_pretrain_input(write_spec):
    spec = minimal_spec()
    spec["stages"]["pretrain"]["heads"]["water"]["weight"] = 3.0
    spec["stages"]["pretrain"]["heads"]["molecules"]["fitting_net"] = {"neuron": [16]}
    spec["stages"]["pretrain"]["training"].update(batch_size=2, seed=7, extra={"gradient_max_norm": 5.0})
    step = plan_of(write_spec, spec).step("pretrain")
    inp = step.parameters["deepmd_input"]
    model = inp["model"]
    assert model["shared_dict"]["type_map_all"] == ["O", "H", "C", "Ge", "Te"]
    assert model["shared_dict"]["shared_descriptor"]["type"] == "dpa2"
    assert set(model["model_dict"]) == {"water", "molecules"}
    assert model["model_dict"]["water"]["descriptor"] == "shared_descriptor"
    assert model["model_dict"]["water"]["fitting_net"]["neuron"] == [32, 32]  # dpa2-tiny preset
    assert model["model_dict"]["molecules"]["fitting_net"]["neuron"] == [16]  # per-head override
    training = inp["training"]
    assert training["model_prob"] == pytest.approx({"water": 0.75, "molecules": 0.25})
    assert training["data_dict"]["water"]["training_data"] == {"systems": [], "batch_size": 2}
    assert "validation_data" not in training["data_dict"]["water"]
    assert training["numb_steps"] == 10 and training["seed"] == 7 and training["gradient_max_norm"] == 5.0
    assert set(inp["loss_dict"]) == {"water", "molecules"} and inp["loss_dict"]["water"]["type"] == "ener"
    assert step.parameters["head_datasets"] == {
        "water": {"train": ["water"], "validation": []},
        "molecules": {"train": ["molecules"], "validation": []},
    }
    assert step.datasets == ("water", "molecules")


def test_preset_overrides_and_training_defaults(write_spec):
    spec = minimal_spec()
    spec["model"] = {
        "preset": "dpa2-small",
        "descriptor": {"repformer": {"nlayers": 1}},
        "fitting_net": {"neuron": [8, 8]},
    }
    spec["stages"]["pretrain"]["training"] = {
        "steps": 400,
        "learning_rate": {"start": 2e-4},
        "loss": {"start_pref_f": 10},
    }
    inp = plan_of(write_spec, spec).step("pretrain").parameters["deepmd_input"]
    descriptor = inp["model"]["shared_dict"]["shared_descriptor"]
    assert descriptor["repformer"]["nlayers"] == 1 and descriptor["repformer"]["g1_dim"] == 128  # deep merge
    assert inp["model"]["model_dict"]["water"]["fitting_net"]["neuron"] == [8, 8]
    assert inp["learning_rate"] == {"type": "exp", "start_lr": 2e-4, "stop_lr": 3.51e-8, "decay_steps": 20}
    assert (
        inp["loss_dict"]["water"]["start_pref_f"] == 10 and inp["loss_dict"]["water"]["start_pref_e"] == 0.02
    )
    assert inp["training"]["disp_freq"] == 40 and inp["training"]["save_freq"] == 400


def test_finetune_from_head_random_and_file(write_spec, tmp_path):
    from tests.fake_dp import save_checkpoint

    multi = {
        "model_dict": {"Domains_Alloy": {"type_map": "tm"}, "H2O": {"type_map": "tm"}},
        "shared_dict": {},
    }
    save_checkpoint(tmp_path / "ext.pt", multi, 99, 1e-3)
    save_checkpoint(tmp_path / "single.pt", {"type_map": ["Ge", "Te"]}, 99, 1e-3)
    spec = minimal_spec()
    spec["stages"]["finetune"] = [
        {"name": "a", "from": {"head": "water"}, "datasets": ["gete"], "validation": ["gete-test"]},
        {"name": "b", "from": {"head": "random"}, "datasets": ["gete"]},
        {"name": "c", "from": {"model_file": "ext.pt", "head": "Domains_Alloy"}, "datasets": ["gete"]},
        {"name": "d", "from": {"model_file": str(tmp_path / "single.pt")}, "datasets": ["gete"]},
    ]
    spec["stages"]["test"] = [{"models": ["finetune.a", "finetune.c"], "datasets": ["gete-test"]}]
    plan = plan_of(write_spec, spec)
    a, b, c, d = (plan.step(f"finetune-{x}") for x in "abcd")
    assert a.parameters["model_branch"] == "water" and a.artifacts["base_checkpoint"] == StepOutput(
        "pretrain", "checkpoint"
    )
    assert b.parameters["model_branch"] == RANDOM_BRANCH
    assert c.parameters["model_branch"] == "Domains_Alloy"
    assert c.artifacts["base_checkpoint"] == LocalFile((tmp_path / "ext.pt").resolve())
    for head, message in (
        (None, "required: ext.pt is multi-task (heads: Domains_Alloy, H2O or 'random')"),
        ("Alloy", "ext.pt has no head 'Alloy' (heads: Domains_Alloy, H2O)"),
    ):
        spec["stages"]["finetune"][2]["from"] = {"model_file": "ext.pt", **({"head": head} if head else {})}
        with pytest.raises(SpecError, match=re.escape(message)):
            plan_of(write_spec, spec)
    assert d.parameters["model_branch"] == "" and d.depends == []
    model = a.parameters["deepmd_input"]["model"]
    assert model == {"type_map": ["O", "H", "C", "Ge", "Te"], "descriptor": {}, "fitting_net": {}}
    assert a.parameters["deepmd_input"]["training"]["validation_data"]["systems"] == []
    assert a.datasets == ("gete", "gete-test")
    assert plan.step("test-finetune-c-on-gete-test").depends == ["finetune-c"]


def test_single_head_pretrain_is_single_task(write_spec):
    spec = minimal_spec()
    spec["stages"]["pretrain"]["heads"] = {"water": {"datasets": ["water"], "validation": ["gete-test"]}}
    spec["stages"]["finetune"][0]["from"] = {}
    spec["stages"]["test"] = [{"models": ["pretrain.water", "finetune.gete"], "datasets": ["gete-test"]}]
    plan = plan_of(write_spec, spec)
    inp = plan.step("pretrain").parameters["deepmd_input"]
    assert "model_dict" not in inp["model"] and inp["model"]["type_map"][:2] == ["O", "H"]
    assert inp["training"]["validation_data"] == {"systems": [], "batch_size": "auto"}
    assert plan.step("freeze-water").parameters["head"] == ""  # single-task: no --head
    assert plan.step("finetune-gete").parameters["model_branch"] == ""


def test_keys_are_slugs_but_model_references_keep_the_spec_names(write_spec):
    spec = minimal_spec()
    spec["stages"]["pretrain"]["heads"] = {
        "H2O_PD": {"datasets": ["water"]},
        "CHO": {"datasets": ["molecules"]},
    }
    spec["stages"]["finetune"] = [{"name": "GeTe.v2", "from": {"head": "H2O_PD"}, "datasets": ["gete"]}]
    spec["stages"]["test"] = [{"models": ["pretrain.H2O_PD", "finetune.GeTe.v2"], "datasets": ["gete-test"]}]
    plan = plan_of(write_spec, spec)
    assert [s.key for s in plan.steps] == [
        "pretrain",
        "freeze-h2o-pd",
        "freeze-cho",
        "finetune-gete-v2",
        "test-pretrain-h2o-pd-on-gete-test",
        "test-finetune-gete-v2-on-gete-test",
    ]
    assert plan.step("freeze-h2o-pd").model_ref == "pretrain.H2O_PD"
    assert plan.step("freeze-h2o-pd").parameters["head"] == "H2O_PD"  # DeePMD-kit branch name unchanged
    assert plan.step("finetune-gete-v2").model_ref == "finetune.GeTe.v2"
    assert plan.evaluations[1].evaluation.model == "finetune.GeTe.v2"


def test_duplicate_tests_run_once_and_refits_are_shared(write_spec):
    spec = minimal_spec()
    spec["stages"]["test"] = [
        {
            "models": ["pretrain.water", "pretrain.molecules"],
            "datasets": ["gete-test", "gete"],
            "change_bias_on": "gete",
            "allow_overlap": True,  # re-fit and test on gete, on purpose
        },
        {"models": ["pretrain.water"], "datasets": ["gete-test"], "change_bias_on": "gete"},
        {"models": ["pretrain.water"], "datasets": ["gete-test"], "frames": 2},
    ]
    plan = plan_of(write_spec, spec)
    keys = [s.key for s in plan.steps]
    assert keys.count("change-bias-pretrain-water-on-gete") == 1
    assert len(plan.evaluations) == 5
    assert plan.step("test-pretrain-water-on-gete-test").parameters["frames"] == 2
    assert plan.step("test-pretrain-water-on-gete-test").depends == ["freeze-water"]


def test_steps_are_checked_against_their_op_contract():
    from lamflow.ops.freeze import FreezeOP, FreezeParams
    from lamflow.ops.test import TestOP, TestParams
    from lamflow.workflows.compile.plan import DatasetBundle, Plan, PlanError, StepPlan

    freeze = StepPlan(
        "freeze-a", FreezeOP, FreezeParams(head="a"), "s", {"checkpoint": StepOutput("p", "checkpoint")}
    )
    assert freeze.output("model") == StepOutput("freeze-a", "model")
    with pytest.raises(PlanError, match="has no output artifact 'modle'"):
        freeze.output("modle")
    with pytest.raises(PlanError, match="params are FreezeParams, TestOP takes TestParams"):
        StepPlan("t", TestOP, FreezeParams(), "s")
    with pytest.raises(
        PlanError, match=r"artifacts \['checkpoint'\] unknown / \['datasets', 'model'\] missing"
    ):
        StepPlan(
            "t",
            TestOP,
            TestParams(dataset="d", dataset_formats={}),
            "s",
            {"checkpoint": freeze.output("model")},
        )
    test = StepPlan(
        "t", TestOP, TestParams(dataset="d", dataset_formats={}), "s",
        {"model": freeze.output("model"), "datasets": DatasetBundle(("d",))},
    )  # fmt: skip
    with pytest.raises(PlanError, match="no earlier step 'freeze-a'"):
        Plan("x", (test, freeze), {"d": Path("/d")}).check()
    alone = StepPlan(
        "u", TestOP, TestParams(dataset="d", dataset_formats={}), "s",
        {"model": LocalFile(Path("/m.pth")), "datasets": DatasetBundle(("d",))},
    )  # fmt: skip
    Plan("x", (alone,), {"d": Path("/d")}).check()
    with pytest.raises(PlanError, match="unknown datasets"):
        Plan("x", (alone,), {}).check()


def test_colliding_step_keys_are_bad_input_naming_both_yaml_paths(write_spec):
    """Heads a / a-on-b tested on datasets b-on-c / c both give test-pretrain-a-on-b-on-c."""
    spec = minimal_spec()
    spec["datasets"]["b-on-c"] = spec["datasets"]["gete-test"]
    spec["datasets"]["c"] = spec["datasets"]["gete"]
    spec["stages"]["pretrain"]["heads"] = {
        "a": {"datasets": ["water"]},
        "a-on-b": {"datasets": ["molecules"]},
    }
    spec["stages"]["finetune"][0]["from"]["head"] = "a"
    spec["stages"]["test"] = [{"models": ["pretrain.a", "pretrain.a-on-b"], "datasets": ["b-on-c", "c"]}]
    with pytest.raises(SpecError) as info:
        plan_of(write_spec, spec)
    assert info.value.path == "stages.test[0].datasets[1]"
    assert "test-pretrain-a-on-b-on-c" in str(info.value) and "stages.test[0].datasets[0]" in str(info.value)


def test_the_deepmd_check_normalises_as_deepmd_kit_does_and_remembers_accepted_inputs():
    """compile.deepmd_check.normalize builds DeePMD-kit's argument tree once and remembers accepted inputs;
    its result is DeePMD-kit's own normalize's, and a rejected input is still rejected every time."""
    import copy

    from deepmd.utils.argcheck import normalize as deepmd_normalize

    from lamflow.workflows.compile import deepmd_check

    plan = build_plan(load_spec(EXAMPLES / "transfer.yaml"))
    config = copy.deepcopy(plan.step("transfer-gete-scratch-gete-n4-r1").params.deepmd_input)
    config["training"]["training_data"]["systems"] = ["placeholder"]
    expected = deepmd_normalize(copy.deepcopy(config))
    assert deepmd_check.normalize(copy.deepcopy(config)) == expected
    assert deepmd_check.normalize(copy.deepcopy(config)) == expected  # remembered: the same, a copy
    config["model"]["descriptor"]["no_such_key"] = 1
    for _ in range(2):
        with pytest.raises(Exception, match="no_such_key"):
            deepmd_check.normalize(copy.deepcopy(config))
