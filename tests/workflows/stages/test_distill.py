"""The distill and compress stages at validate/compile time: the fan-out, the collect tree, the wiring of
teacher -> labels -> student -> compressed -> evaluation, and every bad input refused with its YAML path."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from lamflow.ops.collect import FAN_IN
from lamflow.workflows.api import validate
from lamflow.workflows.compile.plan import LocalFile, StepOutput
from lamflow.workflows.errors import SpecError
from lamflow.workflows.stages.compress import compressibility
from lamflow.workflows.stages.distill import start_frames, temperature_key
from tests.conftest import DEMO_DATA, EXAMPLES


def distill_spec(**explore: Any) -> dict[str, Any]:
    return {
        "name": "distill",
        "datasets": {
            "water": {"path": str(DEMO_DATA / "water/train")},
            "water-valid": {"path": str(DEMO_DATA / "water/valid")},
            "molecules": {"path": str(DEMO_DATA / "molecules/train")},
        },
        "model": {"preset": "dpa2-tiny"},
        "stages": {
            "pretrain": {"heads": {"water": {"datasets": ["water"]}}, "training": {"steps": 10}},
            "distill": [
                {
                    "name": "w",
                    "teacher": {"model": "pretrain.water"},
                    "explore": {"datasets": ["water"], "temperatures": [300, 600], "steps": 20, **explore},
                    "student": {"preset": "se_e2_a-tiny", "training": {"steps": 10}},
                }
            ],
            "compress": [
                {
                    "name": "w",
                    "model": "distill.w",
                    "drift": {"dataset": "water-valid"},
                    "evaluate": {"dataset": "water-valid"},
                }
            ],
        },
    }


def refused(write_spec, spec: dict[str, Any]) -> SpecError:
    with pytest.raises(SpecError) as info:
        validate(write_spec(spec))
    return info.value


def test_fan_out_is_temperatures_times_start_structures(write_spec):
    _, plan = validate(write_spec(distill_spec()))
    explore = [s for s in plan.steps if s.op.name == "explore"]
    # water/train has two systems, one start frame each; two temperatures
    assert [s.key for s in explore] == [
        "explore-w-s0-300k",
        "explore-w-s0-600k",
        "explore-w-s1-300k",
        "explore-w-s1-600k",
    ]
    assert {(s.params.start.system, s.params.temperature) for s in explore} == {
        (0, 300.0),
        (0, 600.0),
        (1, 300.0),
        (1, 600.0),
    }
    assert all(s.depends == ["freeze-water"] for s in explore)  # the teacher, nothing else: parallel
    collect = plan.step("collect-w")
    assert sorted(a.step for a in collect.artifacts.values()) == [s.key for s in explore]
    assert collect.short


def test_teacher_labels_student_compress_evaluate_are_wired_in_order(write_spec):
    _, plan = validate(write_spec(distill_spec()))
    keys = [s.key for s in plan.steps]
    assert (
        keys.index("label-w") < keys.index("student-w") < keys.index("compress-w") < keys.index("evaluate-w")
    )
    label = plan.step("label-w")
    assert label.artifacts["teacher"] == StepOutput("freeze-water", "model")
    assert label.artifacts["branches"] == StepOutput("collect-w", "branches")
    student = plan.step("student-w")
    assert student.model_ref == "distill.w" and student.resource == "finetune"
    descriptor = student.params.deepmd_input["model"]["descriptor"]
    assert descriptor["type"] == "se_e2_a" and descriptor["neuron"] == [8, 16, 32]
    assert student.params.deepmd_input["model"]["type_map"] == ["O", "H", "C"]  # the spec's type map
    evaluate = plan.step("evaluate-w")
    assert evaluate.params.models == {
        "teacher": "pretrain.water",
        "student": "distill.w",
        "compressed": "compress.w",
    }
    assert evaluate.artifacts["teacher"] == StepOutput("freeze-water", "model")
    assert evaluate.artifacts["student"] == StepOutput("student-w", "model")
    assert evaluate.artifacts["compressed"] == StepOutput("compress-w", "model")
    assert evaluate.comparison is not None and [r for r, _ in evaluate.comparison.roles] == [
        "teacher",
        "student",
        "compressed",
    ]


def test_more_branches_than_one_collect_takes_become_a_tree(write_spec):
    spec = distill_spec(temperatures=[100 + 50 * i for i in range(10)], frames_per_system=2)
    _, plan = validate(write_spec(spec))
    explore = [s for s in plan.steps if s.op.name == "explore"]
    assert len(explore) == 2 * 2 * 10
    collects = [s for s in plan.steps if s.op.name == "collect"]
    assert all(len(s.artifacts) <= FAN_IN for s in collects)
    assert collects[-1].key == "collect-w"
    leaves = {a.step for s in collects for a in s.artifacts.values() if a.step.startswith("explore-")}
    assert leaves == {s.key for s in explore}  # every branch reaches the root once
    assert len(collects) == 5 + 1  # 40 branches -> 5 collects of 8 -> the root


def test_perturbed_copies_multiply_the_start_structures(write_spec):
    spec = distill_spec(perturb={"copies": 3, "atom_distance": 0.05}, temperatures=[300])
    _, plan = validate(write_spec(spec))
    explore = [s for s in plan.steps if s.op.name == "explore"]
    assert len(explore) == 2 * 3
    assert {s.params.start.perturbed_copy for s in explore} == {0, 1, 2}


def test_example_spec_compiles_to_the_whole_chain():
    _, plan = validate(EXAMPLES / "distill.yaml")
    ops = {s.op.name for s in plan.steps}
    assert {"explore", "collect", "label", "student", "compress", "evaluate", "test"} <= ops
    assert plan.step("evaluate-water").params.models["teacher"] == "finetune.water"


def test_start_frames_and_temperature_keys():
    assert start_frames(12, 1) == [0]
    assert start_frames(12, 3) == [0, 6, 11]
    assert start_frames(2, 5) == [0, 1]
    assert temperature_key(300.0) == "300k" and temperature_key(77.5) == "77p5k"


@pytest.mark.parametrize(
    ("change", "path", "words"),
    [
        (
            lambda s: s["stages"]["distill"][0]["explore"].update(temperatures=[300, 0]),
            "stages.distill[0].explore.temperatures[1]",
            "greater than 0",
        ),
        (
            lambda s: s["stages"]["distill"][0]["explore"].update(temperatures=[-5]),
            "stages.distill[0].explore.temperatures[0]",
            "greater than 0",
        ),
        (
            lambda s: s["stages"]["distill"][0].update(teacher={"model": "finetune.nope"}),
            "stages.distill[0].teacher.model",
            "unknown model 'finetune.nope'",
        ),
        (
            lambda s: s["stages"]["distill"][0].update(teacher={"model": "pretrain.nope"}),
            "stages.distill[0].teacher.model",
            "no pretrain model named 'nope'",
        ),
        (
            lambda s: s["stages"]["distill"][0].update(teacher={}),
            "stages.distill[0].teacher",
            "exactly one of model",
        ),
        (
            lambda s: s["stages"]["distill"][0]["explore"].update(datasets=["nope"]),
            "stages.distill[0].explore.datasets[0]",
            "unknown dataset 'nope'",
        ),
        (
            lambda s: s["stages"]["distill"][0]["explore"].update(datasets=["molecules"], ensemble="npt"),
            "stages.distill[0].explore.ensemble",
            "NPT needs a periodic cell",
        ),
        (
            lambda s: s["stages"]["compress"][0].update(model="distill.nope"),
            "stages.compress[0].model",
            "no distill model named 'nope'",
        ),
        (
            lambda s: (
                s["model"].update(preset="dpa2-small"),
                s["stages"]["compress"][0].update(model="pretrain.water"),
            ),
            "stages.compress[0].model",
            "compresses only with repinit.tebd_input_mode: strip",
        ),
        (
            lambda s: s["stages"]["compress"][0]["drift"].update(dataset="nope"),
            "stages.compress[0].drift.dataset",
            "unknown dataset",
        ),
        (
            lambda s: s["stages"]["distill"][0]["student"].update(descriptor={"resnet_dt": True}),
            "stages.compress[0].model",
            "resnet_dt: true cannot be compressed",
        ),
    ],
)
def test_bad_distill_and_compress_input_is_refused_with_its_path(write_spec, change, path, words):
    spec = copy.deepcopy(distill_spec())
    change(spec)
    error = refused(write_spec, spec)
    assert error.path == path
    assert words in str(error)


def test_a_dpa3_model_cannot_be_compressed(write_spec):
    spec = distill_spec()
    spec["model"] = {"preset": "dpa3-tiny"}
    spec["stages"]["compress"][0]["model"] = "pretrain.water"
    error = refused(write_spec, spec)
    assert error.path == "stages.compress[0].model"
    assert "cannot compress DPA3 models" in str(error)


def test_a_compressible_dpa2_is_accepted_with_a_notice(write_spec):
    spec = distill_spec()
    spec["stages"]["compress"][0].update(model="pretrain.water", evaluate=None)
    _, plan = validate(write_spec(spec))
    assert any("only in its repinit block" in n for n in plan.notices)


def test_compressibility_table():
    assert compressibility({"type": "se_e2_a"}) == (None, None)
    assert compressibility({"type": "se_atten_v2", "attn_layer": 0}) == (None, None)
    assert compressibility({"type": "se_atten_v2", "attn_layer": 2})[1] is not None
    assert compressibility({"type": "se_atten"})[0] is not None
    assert compressibility({"type": "hybrid", "list": [{"type": "se_e2_a"}, {"type": "dpa3"}]})[0] is not None


def test_external_teacher_file_is_checked_for_elements(write_spec, tmp_path, fake_dp):
    """An external frozen teacher: its type map (read with `dp show`) must cover the start structures."""
    from tests.fake_dp import save_frozen

    teacher = tmp_path / "teacher.pth"
    save_frozen(teacher, {"type_map": ["O", "C"], "descriptor": {"type": "dpa2"}}, frozen_by_freeze=True)
    spec = distill_spec()
    spec["stages"]["distill"][0]["teacher"] = {"model_file": str(teacher)}
    error = refused(write_spec, spec)
    assert error.path == "stages.distill[0].teacher.model_file"
    assert "lacks H" in str(error)
    save_frozen(teacher, {"type_map": ["O", "H"], "descriptor": {"type": "dpa2"}}, frozen_by_freeze=True)
    _, plan = validate(write_spec(spec))
    assert plan.step("label-w").artifacts["teacher"] == LocalFile(teacher)
    assert plan.step("evaluate-w").params.models["teacher"] == "file:teacher.pth"


def test_teacher_file_must_be_a_frozen_model(write_spec, tmp_path):
    spec = distill_spec()
    spec["stages"]["distill"][0]["teacher"] = {"model_file": str(tmp_path / "model.ckpt.pt")}
    error = refused(write_spec, spec)
    assert error.path == "stages.distill[0].teacher.model_file" and "(.pth)" in str(error)
    spec["stages"]["distill"][0]["teacher"] = {"model_file": str(tmp_path / "missing.pth")}
    assert "no such file" in str(refused(write_spec, spec))


def test_a_split_dataset_starts_md_from_its_train_part_and_evaluates_on_its_test_part(write_spec):
    spec = distill_spec()
    spec["datasets"]["water"]["split"] = {"test_frames": 2}
    spec["stages"]["compress"][0]["evaluate"]["dataset"] = "water"
    _, plan = validate(write_spec(spec))
    assert {s.params.start.dataset for s in plan.steps if s.op.name == "explore"} == {"water@train"}
    assert plan.step("evaluate-w").params.dataset == "water@test"
    assert plan.step("pretrain").params.head_datasets["water"].train == ["water@train"]
