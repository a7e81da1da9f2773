"""The active stage at validate time: the loop's body, the model it provides to later stages, and every
bad input refused with one line naming its YAML path (exit 2 from the CLI) before anything runs."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from lamflow.ops.merge_labels import MAX_PARTS
from lamflow.workflows.api import validate
from lamflow.workflows.compile.plan import Carried, IterationOutput
from lamflow.workflows.errors import SpecError
from lamflow.workflows.spec.active import MAX_LABEL_STEPS
from tests.conftest import DEMO_DATA, run_cli
from tests.workflows.active_spec import active_spec


def with_active(**changes: Any) -> dict[str, Any]:
    spec = active_spec()
    entry = spec["stages"]["active"][0]
    for dotted, value in changes.items():
        target = entry
        *parents, last = dotted.split("__")
        for part in parents:
            target = target.setdefault(part, {})
        if value is None:
            target.pop(last, None)
        else:
            target[last] = value
    return spec


def refused(write_spec, spec: dict[str, Any]) -> SpecError:
    with pytest.raises(SpecError) as info:
        validate(write_spec(spec))
    return info.value


def test_the_loop_provides_its_model_to_the_stages_after_it(write_spec):
    spec = with_active()
    spec["stages"]["distill"] = [
        {
            "name": "s",
            "teacher": {"model": "active.w"},
            "explore": {"datasets": ["water"], "temperatures": [300], "steps": 10},
            "student": {"preset": "se_e2_a-tiny", "training": {"steps": 10}},
        }
    ]
    _, plan = validate(write_spec(spec))
    explore = plan.step("explore-s-s0-300k")
    assert explore.artifacts["teacher"].step == "active-w"  # the loop's output, known once it stopped


def test_the_ensemble_seeds_differ_and_the_labeler_is_wired(write_spec):
    _, plan = validate(write_spec(with_active(ensemble=3)))
    (loop,) = plan.loops
    seeds = [loop.body_step(f"train-{k}").params.deepmd_input["training"]["seed"] for k in (1, 2, 3)]
    assert len(set(seeds)) == 3
    assert loop.body_step("model-devi").params.models == 3
    assert loop.body_step("label").params.labeler == "command"
    assert loop.body_step("converge").params.accurate_fraction == 0.99


@pytest.mark.parametrize(
    ("changes", "path", "words"),
    [
        ({"select": {"lo": 0.5, "hi": 0.2}}, ".select.hi", "lo 0.5 >= hi 0.2"),
        ({"ensemble": 1}, ".ensemble", "at least 2"),
        ({"converge__max_iterations": 0}, ".converge.max_iterations", "at least 1"),
        ({"converge__max_iterations": 51}, ".converge.max_iterations", "at most 50"),
        ({"explore__datasets": []}, ".explore.datasets", "at least 1"),
        ({"explore__steps": 3}, ".explore.steps", "nothing explored"),
        ({"explore__steps_by_iteration": [10, 2]}, ".explore.steps_by_iteration[1]", "nothing explored"),
        ({"converge": {"max_iterations": 3}}, ".converge", "no convergence criterion"),
        ({"converge__test_force_rmse": 0.1, "test": None}, ".converge.test_force_rmse", "held-out"),
        ({"test": "water"}, ".test", "shares frames"),
        ({"label": {}}, ".label", "exactly one labeler"),
        ({"label": {"pyscf": {}}}, ".label.pyscf", "periodic"),
        ({"explore__datasets": ["nope"]}, ".explore.datasets[0]", "unknown dataset"),
        ({"from": {"head": "nope"}}, ".from.head", "no pretrain head"),
        ({"from": {"head": "random"}, "student": {}}, "", "not both"),
        ({"student": {"preset": "dpa9"}}, ".student.preset", "se_e2_a"),
    ],
)  # fmt: skip
def test_bad_input_is_refused_naming_its_path(write_spec, changes, path, words):
    spec = with_active(**changes)
    file = write_spec(spec)
    result = run_cli("validate", str(file))
    assert result.returncode == 2, result.stdout + result.stderr
    (line,) = result.stderr.strip().splitlines()
    assert f"stages.active[0]{path}:" in line and words in line, line


def molecules_spec(**pyscf: Any) -> dict[str, Any]:
    spec = copy.deepcopy(with_active(label={"pyscf": {"basis": "sto-3g", **pyscf}}, test=None))
    spec["datasets"]["mol"] = {"path": str(DEMO_DATA / "molecules/train/C3H3O4")}  # 53 electrons
    spec["stages"]["active"][0]["explore"]["datasets"] = ["mol"]
    return spec


def test_pyscf_refuses_a_spin_the_molecule_cannot_have_and_a_basis_without_its_elements(write_spec):
    error = refused(write_spec, molecules_spec())
    assert error.path == "stages.active[0].label.pyscf.spin" and "53 electrons" in str(error)
    assert validate(write_spec(molecules_spec(spin=1)))[1].loops  # a doublet is fine
    error = refused(write_spec, molecules_spec(spin=1, basis="no-such-basis"))
    assert error.path == "stages.active[0].label.pyscf.basis" and "C, H, O" in str(error)


def test_a_teacher_labels_the_loop_and_must_know_its_elements(write_spec):
    _, plan = validate(write_spec(with_active(label={"teacher": {"model": "pretrain.water"}})))
    label = plan.loops[0].body_step("label")
    assert label.params.labeler == "teacher" and label.artifacts["teacher"].step == "freeze-water"
    spec = with_active(label={"teacher": {"model": "pretrain.water"}}, datasets=["molecules"])
    spec["datasets"]["molecules"] = {"path": str(DEMO_DATA / "molecules/train")}
    spec["stages"]["active"][0]["explore"]["datasets"] = ["molecules"]
    error = refused(write_spec, spec)
    assert error.path == "stages.active[0].label.teacher.model" and "never learned C" in str(error)
    error = refused(write_spec, with_active(label={"teacher": {"model_file": "nope.pth"}}))
    assert error.path == "stages.active[0].label.teacher.model_file"


def test_members_sharing_a_head_get_a_notice(write_spec):
    _, plan = validate(write_spec(with_active()))
    assert any("every ensemble member fine-tunes the same fitting net" in n for n in plan.notices)
    _, plan = validate(write_spec(with_active(**{"from": {"head": "random"}})))
    assert not any("every ensemble member" in n for n in plan.notices)


def test_label_steps_share_the_picks_and_one_merge_gathers_them(write_spec):
    """label.parallel: n label steps per iteration (and n for the random baseline), each its share of the
    picks; the merge takes them all and the decision reads its summed report."""
    spec = with_active(label__parallel=3, select__random_baseline=True)
    _, plan = validate(write_spec(spec))
    loop = plan.loops[0]
    keys = [step.key for step in loop.body]
    for suffix in ("", "-random"):
        labels = [loop.body_step(f"label{suffix}-{k}") for k in (1, 2, 3)]
        assert [(s.params.share, s.params.shares) for s in labels] == [(1, 3), (2, 3), (3, 3)]
        assert all(s.params.frames == ("random" if suffix else "picked") for s in labels)
        merge = loop.body_step(f"merge{suffix}")
        assert merge.params.parts == 3
        assert [merge.artifacts[n].step for n in ("labels", "labels2", "labels3")] == [s.key for s in labels]
        assert keys.index(merge.key) > max(keys.index(s.key) for s in labels)
    assert "label" not in keys and loop.body_step("converge").artifacts["labels"].step == "merge"
    error = refused(write_spec, with_active(label__parallel=9))
    assert error.path == "stages.active[0].label.parallel"
    assert MAX_LABEL_STEPS == MAX_PARTS  # the spec's bound is the merge step's fan-in


def test_members_may_continue_from_their_own_checkpoints(write_spec):
    """init_from_previous: each member (and the random baseline's model) carries its checkpoint into the next
    iteration; iteration 1 has none and fine-tunes `from`."""
    _, plan = validate(write_spec(with_active(init_from_previous=True, select__random_baseline=True)))
    loop = plan.loops[0]
    for key in ("train-1", "train-2", "train-random"):
        step = loop.body_step(key)
        assert step.artifacts["previous"] == Carried(f"{key}-checkpoint")
        carried = loop.carried[f"{key}-checkpoint"]
        assert carried.initial is None and carried.following == IterationOutput(key, "checkpoint")
        assert (
            "base_checkpoint" in step.artifacts
            and "its own checkpoint of the iteration before" in step.summary
        )
    _, plan = validate(write_spec(with_active()))
    assert "previous" not in plan.loops[0].body_step("train-1").artifacts
    assert set(plan.loops[0].carried) == {"labelled"}


def test_the_labeler_image_is_an_image_reference_and_the_label_steps_carry_it(write_spec):
    image = "ghcr.io/lab/cp2k-lamflow:2024.1@sha256:" + "a" * 64
    _, plan = validate(write_spec(with_active(label__command__image=image)))
    assert plan.loops[0].body_step("label").image == image
    assert plan.loops[0].body_step("merge").image is None
    error = refused(write_spec, with_active(label__command__image="My Image"))
    assert error.path == "stages.active[0].label.command.image"


def test_student_members_train_from_scratch_on_the_teachers_labels(write_spec):
    """student: (distillation inside the loop) each member is a ScratchOP with the student's own model on
    the loop's data and labels, never the pretrained checkpoint; with init_from_previous, iteration 2 on
    continues its own checkpoint. The shared-head notice does not apply."""
    spec = with_active(
        student={"preset": "se_e2_a-tiny"},
        label={"teacher": {"model": "pretrain.water"}},
        init_from_previous=True,
    )
    _, plan = validate(write_spec(spec))
    loop = plan.loops[0]
    for key in ("train-1", "train-2"):
        step = loop.body_step(key)
        assert step.op.name == "scratch" and "base_checkpoint" not in step.artifacts
        assert step.artifacts["labelled"] == Carried("labelled")
        assert step.artifacts["previous"] == Carried(f"{key}-checkpoint")
        model = step.params.deepmd_input["model"]
        assert model["descriptor"]["type"] == "se_e2_a" and model["fitting_net"]  # the student's own model
        assert "se_e2_a-tiny student" in step.summary and "iteration 1: scratch" in step.summary
    seeds = {loop.body_step(k).params.deepmd_input["training"]["seed"] for k in ("train-1", "train-2")}
    assert len(seeds) == 2
    # and their own initial weights: DeePMD-kit seeds them from the model section (training.seed orders the
    # data only); with the preset's one seed, a real 2-member loop's students were identical (deviation 1e-16)
    for part in ("descriptor", "fitting_net"):
        inits = [loop.body_step(k).params.deepmd_input["model"][part]["seed"] for k in ("train-1", "train-2")]
        assert inits == [1, 2]
    assert not any("every ensemble member" in n for n in plan.notices)
