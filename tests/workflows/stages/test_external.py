"""``models:`` — external models declared once, used by every stage as ``models.<name>``: a frozen model
as it is, a (multi-task) checkpoint frozen at its head and fine-tuned from; bad files refused at validate."""

from __future__ import annotations

import pytest

from lamflow.workflows.api import submit, validate
from lamflow.workflows.compile.plan import LocalFile, StepOutput
from lamflow.workflows.errors import SpecError
from lamflow.workflows.settings import Settings
from tests.conftest import minimal_spec
from tests.fake_dp import save_checkpoint

TYPE_MAP = ["O", "H", "C", "Ge", "Te"]


def released(path, heads=("water", "gete"), type_map=tuple(TYPE_MAP)):
    """A multi-task checkpoint as DeePMD-kit saves one (what a downloaded DPA-2 model is)."""
    from lamflow.workflows.compile.deepmd_input import architecture
    from lamflow.workflows.spec.model import ModelSpec

    descriptor, fitting = architecture(ModelSpec(preset="dpa2-tiny"))
    branch = {"type_map": "type_map", "descriptor": "descriptor", "fitting_net": fitting}
    params = {
        "shared_dict": {"type_map": list(type_map), "descriptor": descriptor},
        "model_dict": {h: dict(branch) for h in heads},
    }
    save_checkpoint(path, params, step=1000, lr=1e-4)
    return path


def external_spec(tmp_path, head="gete"):
    spec = minimal_spec()
    spec["models"] = {"dpa2": {"file": str(released(tmp_path / "dpa2.pt")), "head": head}}
    spec["stages"] = {
        "finetune": [
            {
                "name": "gete",
                "from": {"model": "models.dpa2"},
                "datasets": ["gete"],
                "training": {"steps": 10},
            }
        ],
        "test": [
            {"models": ["models.dpa2"], "datasets": ["gete-test"], "change_bias_on": "gete"},
            {"models": ["finetune.gete"], "datasets": ["gete-test"]},
        ],
    }
    return spec


def test_a_released_checkpoint_is_frozen_tested_and_fine_tuned(write_spec, tmp_path):
    _, plan = validate(write_spec(external_spec(tmp_path)))
    freeze = plan.step("freeze-models-dpa2")
    assert freeze.params.head == "gete" and freeze.artifacts["checkpoint"] == LocalFile(tmp_path / "dpa2.pt")
    bias = plan.step("change-bias-models-dpa2-on-gete")
    assert bias.artifacts["model"] == StepOutput("freeze-models-dpa2", "model")
    tune = plan.step("finetune-gete")
    assert tune.artifacts["base_checkpoint"] == LocalFile(tmp_path / "dpa2.pt")
    assert tune.params.model_branch == "gete"


def test_a_released_model_runs_end_to_end(write_spec, tmp_path, fake_dp):
    run_dir, summary = submit(
        write_spec(external_spec(tmp_path)), Settings(run_root=tmp_path / "runs", report=False)
    )
    assert summary.status == "Succeeded", summary.error
    assert {t.model for t in summary.tests} == {"models.dpa2", "finetune.gete"}
    freeze = next(c for c in fake_dp.calls() if "freeze" in c and "--head" in c)
    assert freeze[freeze.index("--head") + 1] == "gete"
    train = next(c for c in fake_dp.calls() if "train" in c)
    assert train[train.index("--model-branch") + 1] == "gete"


@pytest.mark.parametrize(
    ("change", "path", "fragment"),
    [
        (
            lambda s: s["models"]["dpa2"].pop("head"),
            "models.dpa2.head",
            "required: dpa2.pt is multi-task (heads: water, gete)",
        ),
        (lambda s: s["models"]["dpa2"].update(head="tio2"), "models.dpa2.head", "no head 'tio2' in it"),
        (
            lambda s: s["stages"]["finetune"][0]["from"].update(model="models.dpa3"),
            "stages.finetune[0].from.model",
            "no model 'dpa3' declared under models: (declared: dpa2)",
        ),
        (
            lambda s: s["stages"]["finetune"][0]["from"].update(head="water"),
            "stages.finetune[0].from.head",
            "the head of models.dpa2 is set where it is declared",
        ),
    ],
)
def test_bad_external_models_are_refused(write_spec, tmp_path, change, path, fragment):
    spec = external_spec(tmp_path)
    change(spec)
    with pytest.raises(SpecError) as caught:
        validate(write_spec(spec))
    assert caught.value.path == path and fragment in caught.value.message, str(caught.value)


def test_an_external_checkpoint_lacking_an_element_is_fine_tuned_with_a_notice_not_tested(
    write_spec, tmp_path
):
    spec = external_spec(tmp_path)
    spec["models"]["dpa2"]["file"] = str(released(tmp_path / "no-te.pt", type_map=("O", "H", "C", "Ge")))
    spec["stages"]["test"] = [{"models": ["finetune.gete"], "datasets": ["gete-test"]}]
    _, plan = validate(write_spec(spec))
    assert any(
        n.startswith(
            "stages.finetune[0].datasets[0]: models.dpa2 knows only O, H, C, Ge; the fine-tune adds Te"
        )
        for n in plan.notices
    )
    spec["stages"]["test"] = [{"models": ["models.dpa2"], "datasets": ["gete-test"]}]  # zero-shot: refused
    with pytest.raises(SpecError) as caught:
        validate(write_spec(spec))
    assert "fine-tune it on data holding them first (stages.finetune with from.model: models.dpa2" in str(
        caught.value
    )
