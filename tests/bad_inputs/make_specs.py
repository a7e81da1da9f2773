"""Write the malformed-spec corpus (tests/bad_inputs/specs/*.yaml) from the table below.

Run it after editing the table: `python tests/bad_inputs/make_specs.py`. Each file starts with
`# expect: <exit code> <yaml.path or -> | <message fragment>`; tests/bad_inputs/test_corpus.py checks that
`validate` (and so `submit`) refuses it exactly so, and that no step starts.
"""

from __future__ import annotations

import copy
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parents[1]))  # run as a script from anywhere: `tests` must be importable

from tests.conftest import DEMO_DATA, minimal_spec  # noqa: E402

OUT = HERE / "specs"
DATA = "../../../examples/data"

BASE: dict[str, Any] = {"version": 1, **minimal_spec(name="bad")}
for _dataset in BASE["datasets"].values():  # committed files: paths relative to specs/
    _dataset["path"] = f"{DATA}/{Path(_dataset['path']).relative_to(DEMO_DATA).as_posix()}"


def spec(change: Callable[[dict[str, Any]], Any]) -> dict[str, Any]:
    s = copy.deepcopy(BASE)
    change(s)
    return s


def pre(s: dict[str, Any]) -> dict[str, Any]:
    return s["stages"]["pretrain"]


def ft(s: dict[str, Any]) -> dict[str, Any]:
    return s["stages"]["finetune"][0]


def prop(s: dict[str, Any], declared: dict[str, Any] | None = None, **study: Any) -> None:
    """A property study of QM9 (band_prop, 3 components, intensive) from the molecules head."""
    s["datasets"]["qm9"] = {
        "path": f"{DATA}/qm9",
        "split": {"test_fraction": 0.25, "seed": 1},
        "properties": declared or {"band_prop": {"dim": 3, "intensive": True}},
    }
    s["stages"]["transfer"] = [{"name": "q", "property": "band_prop", "models": ["pretrain.molecules"],
                                "datasets": ["qm9"], "learning_curve": {"sizes": [10]}, **study}]  # fmt: skip


def prop_model(s: dict[str, Any]) -> None:
    """QM9 declared, and finetune.band: the pretrained descriptor fine-tuned to band_prop."""
    prop(s)
    s["stages"].pop("transfer")
    s["stages"]["finetune"].append({"name": "band", "property": "band_prop", "from": {"head": "random"},
                                    "datasets": ["qm9"]})  # fmt: skip


def extensive(s: dict[str, Any]) -> None:
    """A property that is a sum over atoms (here: 2 per atom), declared intensive; its data is committed
    beside the corpus (tests/bad_inputs/data/sized)."""
    s["datasets"]["sized"] = {
        "path": "../data/sized",
        "properties": {"total": {"dim": 1, "intensive": True}},
    }


def write_sized(root: Path) -> None:
    """Three molecules-like systems of 4, 8 and 16 hydrogens, 5 frames each, whose ``total`` is 2 per atom
    (an extensive property) with a small spread, and no energies."""
    import numpy as np

    for natoms in (4, 8, 16):
        system = root / f"h{natoms}"
        (system / "set.000").mkdir(parents=True, exist_ok=True)
        (system / "type.raw").write_text("0\n" * natoms)
        (system / "type_map.raw").write_text("H\n")
        (system / "nopbc").write_text("")
        coord = np.arange(5 * natoms * 3, dtype=float).reshape(5, natoms * 3) * 0.7
        np.save(system / "set.000" / "coord.npy", coord)
        np.save(system / "set.000" / "total.npy", (natoms * (2.0 + 0.01 * np.arange(5))).reshape(5, 1))


def colliding_keys(s: dict[str, Any]) -> None:
    s["datasets"]["b-on-c"] = s["datasets"].pop("gete-test")
    s["datasets"]["c"] = dict(s["datasets"]["gete"])
    pre(s)["heads"] = {"a": {"datasets": ["water"]}, "a-on-b": {"datasets": ["molecules"]}}
    ft(s)["from"]["head"] = "a"
    s["stages"]["test"] = [{"models": ["pretrain.a", "pretrain.a-on-b"], "datasets": ["b-on-c", "c"]}]


def transfer(
    s: dict[str, Any],
    split: bool = True,
    sizes: tuple[int, ...] | None = (4,),
    **entry: Any,
) -> dict[str, Any]:
    """Add a transfer study of pretrain.water on gete (split 4 of 24 frames off unless split=False)."""
    if split:
        s["datasets"]["gete"]["split"] = {"test_frames": 4}
    study = {"name": "t", "models": ["pretrain.water"], "datasets": ["gete"], **entry}
    if sizes is not None:
        study["learning_curve"] = {"sizes": list(sizes), "training": {"steps": 10}}
    s["stages"]["transfer"] = [study]
    return study


def distill(s: dict[str, Any], **explore: Any) -> dict[str, Any]:
    """Add a distill -> compress chain (teacher finetune.gete, MD from gete frames); returns the entry."""
    entry = {"name": "d", "teacher": {"model": "finetune.gete"},
             "explore": {"datasets": ["gete"], "temperatures": [300], "steps": 10, **explore}}  # fmt: skip
    s["stages"]["distill"] = [entry]
    s["stages"]["compress"] = [{"name": "d", "model": "distill.d", "drift": {"dataset": "gete-test"}}]
    return entry


def active(s: dict[str, Any], **entry: Any) -> dict[str, Any]:
    """Add a concurrent-learning loop on GeTe from the water head (PySCF labels; returns the entry)."""
    loop = {"name": "a", "from": {"head": "water"}, "datasets": ["gete"], "test": "gete-test", "ensemble": 2,
            "explore": {"datasets": ["gete"], "temperatures": [300], "steps": 20, "dump_every": 5},
            "select": {"lo": 0.05, "hi": 0.3},
            "label": {"command": {"command": "vasp_std", "input_format": "vasp/poscar", "input_file": "POSCAR",
                                  "output_format": "vasp/outcar", "output_file": "OUTCAR"}},
            "converge": {"accurate_fraction": 0.9, "max_iterations": 3}, **entry}  # fmt: skip
    s["stages"]["active"] = [loop]
    return loop


# (file stem, spec dict or raw text, exit code, yaml path or "-", message fragment)
CASES: list[tuple[str, Any, int, str, str]] = [
    ("steps-quoted", spec(lambda s: pre(s)["training"].update(steps="2")), 2,
     "stages.pretrain.training.steps", "expected a whole number (got '2', text)"),
    ("steps-zero", spec(lambda s: pre(s)["training"].update(steps=0)), 2,
     "stages.pretrain.training.steps", "must be at least 1 (got 0)"),
    ("steps-unreachable", spec(lambda s: pre(s)["training"].update(steps=10**30)), 2,
     "stages.pretrain.training.steps", "must be at most 1000000000"),
    ("steps-float", spec(lambda s: ft(s)["training"].update(steps=2.5)), 2,
     "stages.finetune[0].training.steps", "expected a whole number (got 2.5)"),
    ("weight-infinite", spec(lambda s: pre(s)["heads"]["water"].update(weight=float("inf"))), 2,
     "stages.pretrain.heads.water.weight", "expected a finite number"),
    ("weight-nan", spec(lambda s: pre(s)["heads"]["water"].update(weight=float("nan"))), 2,
     "stages.pretrain.heads.water.weight", "expected a finite number"),
    ("weight-negative", spec(lambda s: pre(s)["heads"]["water"].update(weight=-1.0)), 2,
     "stages.pretrain.heads.water.weight", "must be greater than 0"),
    ("lr-quoted", spec(lambda s: pre(s)["training"].update(learning_rate={"start": "1e-3"})), 2,
     "stages.pretrain.training.learning_rate.start", "expected a number (got '1e-3', text)"),
    ("lr-above-one", spec(lambda s: pre(s)["training"].update(learning_rate={"start": 5})), 2,
     "stages.pretrain.training.learning_rate.start", "must be at most 1.0"),
    ("batch-size-bool", spec(lambda s: pre(s)["training"].update(batch_size=True)), 2,
     "stages.pretrain.training.batch_size", "expected a whole number from 1 to 1000000, 'auto' or 'auto:N'"),
    ("batch-size-zero", spec(lambda s: pre(s)["training"].update(batch_size=0)), 2,
     "stages.pretrain.training.batch_size", "(got 0)"),
    ("seed-negative", spec(lambda s: pre(s)["training"].update(seed=-1)), 2,
     "stages.pretrain.training.seed", "must be at least 0"),
    ("loss-pref-string", spec(lambda s: pre(s)["training"].update(loss={"start_pref_f": "big"})), 2,
     "stages.pretrain.training.loss.start_pref_f", "expected a number"),
    ("frames-word", spec(lambda s: s["stages"]["test"][0].update(frames="all")), 2,
     "stages.test[0].frames", "expected a whole number (got 'all', text)"),
    ("version-2", spec(lambda s: s.update(version=2)), 2, "version", "must be 1 (got 2)"),
    ("name-too-long", spec(lambda s: s.update(name="x" * 60)), 2, "name", "at most 48 characters"),
    ("name-bad-characters", spec(lambda s: s.update(name="my study")), 2, "name", "expected a name of letters"),
    ("unknown-top-key", spec(lambda s: s.update(stagse=s.pop("stages"))), 2, "stagse", "did you mean 'stages'?"),
    ("unknown-stage", spec(lambda s: s["stages"].update(pretrian=s["stages"].pop("pretrain"))), 2,
     "stages.pretrian", "did you mean 'pretrain'?"),
    ("old-refit-key", spec(lambda s: s["stages"]["test"][0].update(refit_bias_on=s["stages"]["test"][0].pop("change_bias_on"))), 2,
     "stages.test[0].refit_bias_on", "renamed to 'change_bias_on'"),
    ("name-missing", spec(lambda s: s.pop("name")), 2, "name", "required key is missing"),
    ("datasets-empty", spec(lambda s: s.update(datasets={})), 2, "datasets", "needs at least 1 entry"),
    ("datasets-not-a-list", spec(lambda s: ft(s).update(datasets="gete")), 2,
     "stages.finetune[0].datasets", "expected a list"),
    ("stages-empty", spec(lambda s: s.update(stages={})), 2, "stages", "no stage given"),
    ("unknown-dataset", spec(lambda s: pre(s)["heads"]["water"].update(datasets=["watr"])), 2,
     "stages.pretrain.heads.water.datasets[0]", "unknown dataset 'watr'"),
    ("unknown-model", spec(lambda s: s["stages"]["test"][1].update(models=["finetune.gte"])), 2,
     "stages.test[1].models[0]", "no finetune model named 'gte' (finetune models: gete)"),
    ("model-ref-without-stage", spec(lambda s: s["stages"]["test"][1].update(models=["gete"])), 2,
     "stages.test[1].models[0]", "expected a model reference like pretrain.<head>, finetune.<name> or models.<name>"),
    ("model-file-as-reference", spec(lambda s: s["stages"]["test"][1].update(models=["released.pt"])), 2,
     "stages.test[1].models[0]", "to use a model file, declare it under models:"),
    ("external-model-missing", spec(lambda s: s.update(models={"dpa2": {"file": "no-such-model.pt"}})), 2,
     "models.dpa2.file", "no-such-model.pt: no such file"),
    ("external-model-not-a-model", spec(lambda s: s.update(models={"dpa2": {"file": "not-a-checkpoint.pt"}})), 2,
     "models.dpa2.file", "not a DeePMD-kit training checkpoint"),
    ("external-model-wrong-suffix", spec(lambda s: s.update(models={"dpa2": {"file": "model.onnx"}})), 2,
     "models.dpa2.file", "expected a DeePMD-kit checkpoint (.pt) or frozen model (.pth)"),
    ("model-ref-unknown-stage", spec(lambda s: s["stages"]["test"][1].update(models=["distil.x"])), 2,
     "stages.test[1].models[0]", "unknown model 'distil.x'"),
    ("test-models-empty", spec(lambda s: s["stages"]["test"][1].update(models=[])), 2,
     "stages.test[1].models", "needs at least 1 entry"),
    ("change-bias-unknown-dataset", spec(lambda s: s["stages"]["test"][0].update(change_bias_on="gte")), 2,
     "stages.test[0].change_bias_on", "unknown dataset 'gte'"),
    ("head-named-random", spec(lambda s: pre(s)["heads"].update(random={"datasets": ["gete"]})), 2,
     "stages.pretrain.heads.random", "reserved by DeePMD-kit"),
    ("heads-same-step-key", spec(lambda s: pre(s)["heads"].update({"Water": {"datasets": ["gete"]}})), 2,
     "stages.pretrain.heads", "give the same step key 'water'"),
    ("finetune-unknown-head", spec(lambda s: ft(s)["from"].update(head="gete")), 2,
     "stages.finetune[0].from.head", "no pretrain head 'gete'"),
    ("finetune-no-head-multitask", spec(lambda s: ft(s).update({"from": {}})), 2,
     "stages.finetune[0].from.head", "required for a multi-task pretrain"),
    ("finetune-from-frozen", spec(lambda s: ft(s).update({"from": {"model_file": "model.pth"}})), 2,
     "stages.finetune[0].from.model_file", "frozen .pth models cannot be fine-tuned"),
    ("finetune-file-missing", spec(lambda s: ft(s).update({"from": {"model_file": "missing.pt"}})), 2,
     "stages.finetune[0].from.model_file", "missing.pt: no such file"),
    ("finetune-not-a-checkpoint", spec(lambda s: ft(s).update({"from": {"model_file": "not-a-checkpoint.pt"}})), 2,
     "stages.finetune[0].from.model_file", "not a DeePMD-kit training checkpoint"),
    ("finetune-duplicate-name", spec(lambda s: s["stages"]["finetune"].append(copy.deepcopy(ft(s)))), 2,
     "stages.finetune[1].name", "duplicate finetune name 'gete'"),
    ("step-keys-collide", spec(colliding_keys), 2,
     "stages.test[0].datasets[1]", "gives step key 'test-pretrain-a-on-b-on-c', which stages.test[0].datasets[0]"),
    ("dataset-missing", spec(lambda s: s["datasets"]["gete"].update(path="nowhere")), 2,
     "datasets.gete.path", "nowhere: does not exist"),
    ("dataset-is-root", spec(lambda s: s["datasets"]["gete"].update(path="/")), 2,
     "datasets.gete.path", "/: the file system's root is not"),
    ("dataset-type-map-repeats", spec(lambda s: s["datasets"]["gete"].update(type_map=["Ge", "Ge"])), 2,
     "datasets.gete.type_map", "repeats an element"),
    ("model-type-map-lacks-element", spec(lambda s: s["model"].update(type_map=["O", "H", "C"])), 2,
     "model.type_map", "lacks Ge, Te used by dataset 'gete'"),
    ("preset-unknown", spec(lambda s: s["model"].update(preset="dpa5")), 2, "model.preset", "must be "),
    ("descriptor-unknown-type", spec(lambda s: s["model"].update(descriptor={"type": "dpa9"})), 2,
     "model.descriptor", "invalid choice `dpa9` for flag key `type`"),
    ("descriptor-unknown-key", spec(lambda s: s["model"].update(descriptor={"repinit": {"nlayer": 2}})), 2,
     "model.descriptor.repinit", "undefined key `nlayer`"),
    ("head-fitting-unknown-key", spec(lambda s: pre(s)["heads"]["water"].update(fitting_net={"nueron": [8]})), 2,
     "stages.pretrain.heads.water.fitting_net", "undefined key `nueron`"),
    ("extra-unknown-key", spec(lambda s: pre(s)["training"].update(extra={"bogus": 1})), 2,
     "stages.pretrain.training.extra", "undefined key `bogus`"),
    ("extra-negative-steps", spec(lambda s: ft(s)["training"].update(extra={"numb_steps": -3})), 2,
     "stages.finetune[0].training.extra.numb_steps", "must be a whole number from 1"),
    ("resources-memory-gb", spec(lambda s: s.update(resources={"pretrain": {"memory": "4GB"}})), 2,
     "resources.pretrain.memory", "'4GB' is not a Kubernetes quantity such as 4, 500m or 16Gi (bytes are Ki/Mi/Gi"),
    ("resources-cpu-word", spec(lambda s: s.update(resources={"default": {"cpu": "four"}})), 2,
     "resources.default.cpu", "'four' is not a Kubernetes quantity"),
    ("resources-limit-below-request",
     spec(lambda s: s.update(resources={"finetune": {"memory": "8Gi", "memory_limit": "4Gi"}})), 2,
     "resources.finetune", "memory_limit 4Gi is below the memory request 8Gi"),
    ("resources-gpus-negative", spec(lambda s: s.update(resources={"pretrain": {"gpus": -1}})), 2,
     "resources.pretrain.gpus", "must be at least 0"),
    ("resources-unknown-class", spec(lambda s: s.update(resources={"pretraining": {"gpus": 1}})), 2,
     "resources.pretraining", "unknown key"),
    ("distill-temperature-zero", spec(lambda s: distill(s, temperatures=[300, 0])), 2,
     "stages.distill[0].explore.temperatures[1]", "must be greater than 0"),
    ("distill-teacher-unknown", spec(lambda s: distill(s).update(teacher={"model": "finetune.nope"})), 2,
     "stages.distill[0].teacher.model", "no finetune model named 'nope'"),
    ("distill-npt-without-cell", spec(lambda s: distill(s, datasets=["molecules"], ensemble="npt")), 2,
     "stages.distill[0].explore.ensemble", "NPT needs a periodic cell"),
    ("compress-dpa3", spec(lambda s: (distill(s), s.update(model={"preset": "dpa3-tiny"}),
                                      s["stages"]["compress"][0].update(model="pretrain.water"))), 2,
     "stages.compress[0].model", "cannot compress DPA3 models"),
    ("compress-misspelt-key", spec(lambda s: (distill(s), s["stages"]["compress"][0].update(stepp=0.01))), 2,
     "stages.compress[0].stepp", "unknown key 'stepp' (did you mean 'step'?)"),
    ("split-leaves-train-empty", spec(lambda s: s["datasets"]["gete"].update(split={"test_frames": 40})), 2,
     "datasets.gete.split", "leaves the train part empty"),
    ("split-two-rules", spec(lambda s: s["datasets"]["gete"].update(split={"test_frames": 2, "test_fraction": 0.1})),
     2, "datasets.gete.split", "exactly one of test_fraction or test_frames"),
    ("transfer-without-split", spec(lambda s: transfer(s, split=False)), 2,
     "stages.transfer[0].datasets[0]", "'gete' has no held-out frames: give datasets.gete.split"),
    ("transfer-size-too-large", spec(lambda s: transfer(s, sizes=(4, 500))), 2,
     "stages.transfer[0].learning_curve.sizes[1]", "500 frames asked for; the train part of 'gete' has 20"),
    ("transfer-size-zero", spec(lambda s: transfer(s, sizes=(0,))), 2,
     "stages.transfer[0].learning_curve", "sizes must be whole numbers from 1"),
    ("transfer-nothing-to-do", spec(lambda s: transfer(s, zero_shot=False, sizes=None)), 2,
     "stages.transfer[0]", "nothing to do"),
    ("transfer-gate-unknown-model", spec(lambda s: transfer(s, gates=[{"model": "finetune.gete", "dataset": "gete",
                                                                        "metric": "force_rmse", "max": 0.2}])), 2,
     "stages.transfer[0].gates[0].model", "'finetune.gete' is not one of pretrain.water"),
    ("transfer-gate-unknown-size", spec(lambda s: transfer(s, gates=[{"model": "pretrain.water", "dataset": "gete",
                                                                       "metric": "force_rmse", "max": 0.2, "at": 8}])), 2,
     "stages.transfer[0].gates[0].at", "no learning-curve size 8 (sizes: 4)"),
    ("transfer-gate-unknown-metric", spec(lambda s: transfer(s, gates=[{"model": "pretrain.water", "dataset": "gete",
                                                                         "metric": "force_mae", "max": 0.2}])), 2,
     "stages.transfer[0].gates[0].metric", "force_mae"),
    ("raw-type-map-lacks-an-element", spec(lambda s: s["datasets"].update(h2o={
        "path": f"{DATA}/raw/vasp_h2o/OUTCAR", "format": "vasp/outcar", "type_map": ["O"]})), 2,
     "datasets.h2o.type_map", "['O'] lacks H, which"),
    ("raw-wrong-format", spec(lambda s: s["datasets"].update(h2o={
        "path": f"{DATA}/raw/vasp_h2o/OUTCAR", "format": "cp2k/output"})), 2,
     "datasets.h2o.path", "OUTCAR: not readable as cp2k/output"),
    # issue 22, class 1: test data that shares frames with training data through a split part or a copy
    ("leak-test-split-of-training-folder", spec(lambda s: (s["datasets"].update(
        {"gete-split": {"path": f"{DATA}/gete/train", "split": {"test_frames": 4}}}),
        s["stages"]["test"].append({"models": ["finetune.gete"], "datasets": ["gete-split"]}))), 2,
     "stages.test[2].datasets[0]", "test data 'gete-split@test' shares frames with 'gete', training data of finetune.gete"),
    ("leak-transfer-split-of-pretraining-folder", spec(lambda s: (s["datasets"].update(
        {"water-split": {"path": f"{DATA}/water/train", "split": {"test_frames": 2}}}),
        s["stages"].update(transfer=[{"name": "t", "models": ["pretrain.water"], "datasets": ["water-split"]}]))), 2,
     "stages.transfer[0].datasets[0]", "test part 'water-split@test' shares frames with 'water', training data of pretrain.water"),
    ("leak-change-bias-on-the-test-frames", spec(lambda s: (s["datasets"].update(
        {"gete-split": {"path": f"{DATA}/gete/train", "split": {"test_frames": 4}}}),
        s["stages"]["test"][0].update(datasets=["gete-split"], change_bias_on="gete"))), 2,
     "stages.test[0].change_bias_on", "re-fit data 'gete' shares frames with test data 'gete-split@test'"),
    ("leak-raw-copy-split", spec(lambda s: (s["datasets"].update({
        "h2o": {"path": f"{DATA}/raw/vasp_h2o/OUTCAR", "format": "vasp/outcar"},
        "h2o-split": {"path": f"{DATA}/raw/vasp_h2o/OUTCAR", "format": "vasp/outcar", "split": {"test_frames": 3}}}),
        pre(s)["heads"]["water"].update(datasets=["water", "h2o"]),
        s["stages"]["test"].append({"models": ["pretrain.water"], "datasets": ["h2o-split"]}))), 2,
     "stages.test[2].datasets[0]", "shares frames with 'h2o', training data of pretrain.water"),
    ("leak-validation-part-in-test", spec(lambda s: (s["datasets"]["water"].update(split={"test_frames": 2}),
        s["datasets"].update({"water-copy": {"path": f"{DATA}/water/train"}}),
        s["stages"]["test"].append({"models": ["pretrain.molecules"], "datasets": ["water-copy"]}))), 2,
     "stages.test[2].datasets[0]", "test data 'water-copy' shares frames with 'water@train'"),
    # class 2: the compress stage's evaluation on frames the student or its teacher trained on
    ("compress-evaluate-on-teacher-data", spec(lambda s: (distill(s), s["stages"]["compress"][0].update(
        evaluate={"dataset": "gete", "nve": None}))), 2,
     "stages.compress[0].evaluate.dataset", "evaluation data 'gete' shares frames with 'gete', training data of distill.d or its teacher"),
    ("compress-evaluate-on-pretraining-data", spec(lambda s: (distill(s), s["stages"]["compress"][0].update(
        evaluate={"dataset": "water", "nve": None}))), 2,
     "stages.compress[0].evaluate.dataset", "shares frames with 'water'"),
    ("compress-evaluate-on-start-structures", spec(lambda s: (distill(s, datasets=["gete-test"]),
        s["stages"]["compress"][0].update(evaluate={"dataset": "gete-test", "nve": None}))), 2,
     "stages.compress[0].evaluate.dataset", "evaluation data 'gete-test' shares frames with 'gete-test'"),
    # class 3: gates that could never fire or never pass
    ("transfer-gate-virial-without-virials", spec(lambda s: transfer(s, gates=[{"model": "pretrain.water", "dataset": "gete",
                                                                                "metric": "virial_rmse_per_atom", "max": 0.01}])), 2,
     "stages.transfer[0].gates[0].metric", "virial_rmse_per_atom needs virial labels, and no system of 'gete@test' has virial.npy"),
    ("transfer-gate-normalized-virial-without-virials", spec(lambda s: transfer(s, gates=[{"model": "pretrain.water", "dataset": "gete",
                                                                                           "metric": "normalized_virial", "max": 0.5}])), 2,
     "stages.transfer[0].gates[0].metric", "normalized_virial needs virial labels"),
    ("transfer-gate-normalized-above-one", spec(lambda s: transfer(s, gates=[{"model": "pretrain.water", "dataset": "gete",
                                                                              "metric": "normalized_force", "max": 1.5}])), 2,
     "stages.transfer[0].gates[0].max", "max 1.5: normalized_force is capped at 1"),
    ("transfer-gate-normalized-at-one", spec(lambda s: transfer(s, gates=[{"model": "pretrain.water", "dataset": "gete",
                                                                           "metric": "normalized_error", "max": 1, "at": 4}])), 2,
     "stages.transfer[0].gates[0].max", "so the gate could never fail"),
    ("registry-gate-virial-without-virials", spec(lambda s: s.update(registry={"promote_gate": {
        "dataset": "gete-test", "metric": "virial_mae_per_atom"}})), 2,
     "registry.promote_gate.metric", "virial_mae_per_atom needs virial labels, and no system of 'gete-test' has virial.npy"),
    # class 4: a teacher asked about elements its training data never held
    ("distill-teacher-never-learned-the-elements", spec(lambda s: distill(s).update(teacher={"model": "pretrain.molecules"})), 2,
     "stages.distill[0].teacher.model", "the teacher pretrain.molecules never learned Ge, Te"),
    ("distill-teacher-head-lacks-carbon", spec(lambda s: distill(s, datasets=["molecules"]).update(teacher={"model": "pretrain.water"})), 2,
     "stages.distill[0].teacher.model", "the teacher pretrain.water never learned C"),
    ("distill-teacher-finetune-lacks-carbon", spec(lambda s: distill(s, datasets=["molecules"])), 2,
     "stages.distill[0].teacher.model", "the teacher finetune.gete never learned C"),
    # class 5: explorations that explore nothing
    ("distill-min-distance-above-start", spec(lambda s: distill(s).update(select={"min_distance": 3.0})), 2,
     "stages.distill[0].select.min_distance", "3 Å, but atoms of the start structure"),
    ("distill-min-distance-above-water-start", spec(lambda s: distill(s, datasets=["water"]).update(
        teacher={"model": "pretrain.water"}, select={"min_distance": 1.2})), 2,
     "stages.distill[0].select.min_distance", "every MD would count as blown up at step 0"),
    ("distill-steps-below-dump-every", spec(lambda s: distill(s, steps=5, dump_every=10)), 2,
     "stages.distill[0].explore.steps", "only the start structure would be kept"),
    ("compress-nve-one-sample", spec(lambda s: (distill(s), s["stages"]["compress"][0].update(
        evaluate={"dataset": "gete-test", "nve": {"steps": 10, "dump_every": 20}}))), 2,
     "stages.compress[0].evaluate.nve.steps", "one energy sample, no drift"),
    ("compress-nve-min-distance-above-start", spec(lambda s: (distill(s), s["stages"]["compress"][0].update(
        evaluate={"dataset": "gete-test", "nve": {"min_distance": 2.5}}))), 2,
     "stages.compress[0].evaluate.nve.min_distance", "every NVE run would count as exploded at step 0"),
    # class 6: Kubernetes quantities that mean something else
    ("resources-memory-without-unit", spec(lambda s: s.update(resources={"pretrain": {"memory": 64}})), 2,
     "resources.pretrain.memory", "64 means 64 bytes (a number without a unit is bytes), below the 64Mi a step needs; did you mean 64Gi?"),
    ("resources-memory-milli", spec(lambda s: s.update(resources={"finetune": {"memory": "512m"}})), 2,
     "resources.finetune.memory", "thousandths of a byte"),
    ("resources-memory-limit-kibibytes", spec(lambda s: s.update(resources={"default": {"memory_limit": "100Ki"}})), 2,
     "resources.default.memory_limit", "100Ki means 102400 bytes"),
    ("resources-cpu-millicores-without-m", spec(lambda s: s.update(resources={"pretrain": {"cpu": 4000}})), 2,
     "resources.pretrain.cpu", "4000 means 4000 cores"),
    ("resources-cpu-below-a-millicore", spec(lambda s: s.update(resources={"default": {"cpu": "0.0001"}})), 2,
     "resources.default.cpu", "below Kubernetes' smallest CPU unit"),
    ("resources-gpus-more-than-a-node", spec(lambda s: s.update(resources={"pretrain": {"gpus": 64}})), 2,
     "resources.pretrain.gpus", "must be at most 16"),
    # class 7: training across nodes that cannot be
    ("resources-nodes-zero", spec(lambda s: s.update(resources={"pretrain": {"nodes": 0}})), 2,
     "resources.pretrain.nodes", "must be at least 1"),
    ("resources-nodes-fraction", spec(lambda s: s.update(resources={"pretrain": {"nodes": 1.5}})), 2,
     "resources.pretrain.nodes", "expected a whole number"),
    ("resources-nodes-on-steps-that-do-not-train", spec(lambda s: s.update(resources={"default": {"nodes": 2}})), 2,
     "resources.default", "nodes 2: only training steps run across nodes"),
    ("active-trust-levels-crossed", spec(lambda s: active(s, select={"lo": 0.3, "hi": 0.05})), 2,
     "stages.active[0].select.hi", "trust levels lo 0.3 >= hi 0.05"),
    ("active-ensemble-of-one", spec(lambda s: active(s, ensemble=1)), 2,
     "stages.active[0].ensemble", "must be at least 2"),
    ("active-no-start-structures", spec(lambda s: active(s)["explore"].update(datasets=[])), 2,
     "stages.active[0].explore.datasets", "at least 1"),
    ("active-max-iterations-zero", spec(lambda s: active(s)["converge"].update(max_iterations=0)), 2,
     "stages.active[0].converge.max_iterations", "must be at least 1"),
    ("active-md-explores-nothing", spec(lambda s: active(s)["explore"].update(steps_by_iteration=[20, 3])), 2,
     "stages.active[0].explore.steps_by_iteration[1]", "nothing explored"),
    ("active-no-convergence-criterion", spec(lambda s: active(s, converge={"max_iterations": 3})), 2,
     "stages.active[0].converge", "no convergence criterion"),
    ("active-rmse-criterion-without-test-data", spec(lambda s: active(s, test=None,
        converge={"test_force_rmse": 0.1})), 2,
     "stages.active[0].converge.test_force_rmse", "needs a held-out dataset"),
    ("active-held-out-is-training-data", spec(lambda s: active(s, test="gete")), 2,
     "stages.active[0].test", "shares frames"),
    ("active-pyscf-on-a-crystal", spec(lambda s: active(s, label={"pyscf": {}})), 2,
     "stages.active[0].label.pyscf", "the PySCF labeler labels molecules"),
    ("active-pyscf-spin-the-molecule-cannot-have", spec(lambda s: active(s, datasets=["molecules"], test=None,
        explore={"datasets": ["molecules"], "temperatures": [300], "steps": 20, "dump_every": 5},
        label={"pyscf": {"basis": "sto-3g"}}, **{"from": {"head": "molecules"}})), 2,
     "stages.active[0].label.pyscf.spin", "53 electrons at charge 0"),
    ("active-members-both-fine-tuned-and-students", spec(lambda s: active(s, student={"preset": "se_e2_a-tiny"})),
     2, "stages.active[0]", "give `from` (members fine-tune a checkpoint) or `student`"),
    # issue 26: property studies
    ("property-not-in-the-data", spec(lambda s: prop(s, declared={"gap": {"dim": 1, "intensive": True}})), 2,
     "datasets.qm9.path", "gap.npy: missing (a declared property)"),
    ("property-study-names-an-undeclared-property", spec(lambda s: prop(s, property="gap")), 2,
     "stages.transfer[0].datasets[0]", "'qm9' declares band_prop, not 'gap'"),
    ("property-dim-does-not-match-the-array", spec(lambda s: prop(s, declared={"band_prop": {"dim": 2, "intensive": True}})),
     2, "datasets.qm9.path", "band_prop.npy: shape (80, 3), expected (80, 2)"),
    ("property-head-tested-on-energy-data", spec(lambda s: (s["datasets"]["gete"].update(split={"test_frames": 4}),
        prop(s, datasets=["gete"]))), 2,
     "stages.transfer[0].datasets[0]", "'gete' declares no properties, not 'band_prop'"),
    ("energy-model-tested-on-property-data", spec(lambda s: (prop(s), s["stages"]["test"].append(
        {"models": ["finetune.gete"], "datasets": ["qm9"]}))), 2,
     "stages.test[2].datasets[0]", "'qm9' holds only the properties band_prop: this step trains or tests an energy model"),
    ("energy-fine-tune-on-property-data", spec(lambda s: (prop(s), ft(s).update(datasets=["qm9"]))), 2,
     "stages.finetune[0].datasets[0]", "holds only the properties band_prop"),
    ("property-zero-shot", spec(lambda s: prop(s, zero_shot=True)), 2,
     "stages.transfer[0].zero_shot", "a property study has no zero-shot result"),
    ("property-gate-on-an-energy-metric", spec(lambda s: prop(s, gates=[
        {"model": "pretrain.molecules", "dataset": "qm9", "at": 10, "metric": "normalized_force", "max": 0.9}])), 2,
     "stages.transfer[0].gates[0].metric", "normalized_force is an energy metric; the study tests band_prop"),
    ("property-gate-on-an-energy-study", spec(lambda s: (s["datasets"]["gete"].update(split={"test_frames": 4}),
        s["stages"].update(transfer=[{"name": "e", "models": ["pretrain.water"], "datasets": ["gete"], "gates": [
            {"model": "pretrain.water", "dataset": "gete", "metric": "normalized_property", "max": 0.9}]}]))), 2,
     "stages.transfer[0].gates[0].metric", "normalized_property: the study tests energies and forces"),
    ("property-declared-intensive-grows-with-size", spec(extensive), 2,
     "datasets.sized.properties.total.intensive", "declared intensive, but total[0] grows with the atom count"),
    ("property-on-raw-dft-output", spec(lambda s: s["datasets"].update(raw={
        "path": f"{DATA}/raw/vasp_h2o/OUTCAR", "format": "vasp/outcar",
        "properties": {"gap": {"dim": 1, "intensive": True}}})), 2,
     "datasets.raw", "properties are read from deepmd/npy or deepmd/hdf5 sets"),
    ("property-model-tested-on-energy-data", spec(lambda s: (prop_model(s), s["stages"]["test"].append(
        {"models": ["finetune.band"], "datasets": ["gete-test"]}))), 2,
     "stages.test[2].datasets[0]", "'gete-test' declares no properties, not 'band_prop'"),
    ("property-model-as-a-teacher", spec(lambda s: (prop_model(s), distill(s),
        s["stages"]["distill"][0]["teacher"].update(model="finetune.band"))), 2,
     "stages.distill[0].teacher.model", "finetune.band predicts band_prop, not energies and forces"),
    ("property-model-change-bias", spec(lambda s: (prop_model(s), s["stages"]["test"].append(
        {"models": ["finetune.band"], "datasets": ["qm9"], "change_bias_on": "gete"}))), 2,
     "stages.test[2].change_bias_on", "change-bias re-fits an energy model's per-element energies"),
    ("property-promotion-gate-without-a-property-model", spec(lambda s: s.update(
        registry={"promote_gate": {"dataset": "gete-test", "metric": "property_rmse"}})), 2,
     "registry.promote_gate.metric", "property_rmse: no property model of this spec is tested on 'gete-test'"),
    ("duplicate-yaml-key", "name: a\nname: b\n", 2, "-", "duplicate key 'name'"),
    ("invalid-yaml", "name: x\ndatasets: [unclosed\n", 2, "-", "invalid YAML: line"),
    ("nested-too-deep", "name: x\ndeep: " + "[" * 1000 + "]" * 1000 + "\n", 2, "-", "nested too deeply"),
    ("spec-is-a-list", "- name: x\n", 2, "-", "must be a YAML mapping"),
    ("spec-empty", "", 2, "-", "must be a YAML mapping"),
]  # fmt: skip


def main() -> None:
    OUT.mkdir(exist_ok=True)
    for old in OUT.glob("*.yaml"):
        old.unlink()
    for stem, content, code, path, fragment in CASES:
        text = content if isinstance(content, str) else yaml.safe_dump(content, sort_keys=False)
        (OUT / f"{stem}.yaml").write_text(f"# expect: {code} {path} | {fragment}\n{text}")
    (OUT / "not-a-checkpoint.pt").write_text("this is not a checkpoint\n")
    write_sized(HERE / "data" / "sized")
    print(f"wrote {len(CASES)} specs to {OUT}")


if __name__ == "__main__":
    main()
