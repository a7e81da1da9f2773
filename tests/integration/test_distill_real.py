"""examples/distill.yaml end to end with the real DeePMD-kit and real ASE MD (slow): teacher (DPA-2
pretrained, fine-tuned) -> MD exploration fan-out -> selection -> teacher labels -> se_e2_a student ->
dp compress with the drift check -> teacher/student/compressed evaluation; plus the fake's outputs of the
new commands against the real ones."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest

from lamflow.ops.label import DROP_REASONS
from tests.conftest import EXAMPLES, FAKE_DP_COMMAND, run_cli_process

pytestmark = pytest.mark.slow


def short_example(tmp: Path) -> Path:
    """examples/distill.yaml with its trainings and MD cut to the steps the pipeline needs (the example's own
    1200-step teacher and 1500-step student are for the README's figures, not for CI): the same stages,
    data, branches and checks."""
    import yaml

    spec = yaml.safe_load((EXAMPLES / "distill.yaml").read_text())
    for dataset in spec["datasets"].values():
        dataset["path"] = str(EXAMPLES / dataset["path"])
    spec["stages"]["finetune"][0]["training"]["steps"] = 100
    spec["stages"]["distill"][0]["explore"]["steps"] = 40  # 5 dumps per branch
    spec["stages"]["distill"][0]["student"]["training"]["steps"] = 100
    spec["stages"]["compress"][0]["evaluate"]["nve"]["steps"] = 30
    path = tmp / "distill.yaml"
    path.write_text(yaml.safe_dump(spec, sort_keys=False))
    return path


def _submit(tmp: Path, **env: str):
    """`lamflow submit` of the shortened example into tmp/run with a store of its own."""
    return run_cli_process(
        "submit",
        str(short_example(tmp)),
        "--run-dir",
        str(tmp / "run"),
        cwd=tmp,
        env={"LAMFLOW_STORE": str(tmp / "store"), **env},
    )


@pytest.fixture(scope="module")
def distill_run(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("distill")
    return tmp / "run", _submit(tmp)


def _summary(run_dir: Path) -> dict:
    return json.loads((run_dir / "summary.json").read_text())


def test_the_example_runs_teacher_to_compressed_student(distill_run):
    run_dir, result = distill_run
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    steps = _summary(run_dir)["steps"]
    explore = [k for k in steps if k.startswith("explore-water-")]
    assert len(explore) == 4 and all(steps[k]["phase"] == "Succeeded" for k in explore)
    for key in ("collect-water", "label-water", "student-water", "compress-water", "evaluate-water"):
        assert steps[key]["phase"] == "Succeeded", key
    assert "Distillation: vs teacher" in result.stdout


def test_selection_counts_add_up_and_labels_are_the_teachers_predictions(distill_run):
    import dpdata
    from deepmd.infer import DeepPot

    run_dir, _ = distill_run
    summary = _summary(run_dir)
    report = summary["steps"]["label-water"]["parameters"]["report"]
    dropped = sum(report[k] for k in DROP_REASONS)
    assert report["dumped"] == dropped + report["kept"] and report["kept"] > 0
    explored = sum(
        summary["steps"][k]["parameters"]["report"]["frames"]
        for k in summary["steps"]
        if k.startswith("explore-")
    )
    assert report["dumped"] == explored
    labels = run_dir / summary["steps"]["label-water"]["outputs"]["labels"]
    system_dir = next(p for p in (labels / "train").iterdir() if p.is_dir())
    system = dpdata.LabeledSystem(str(system_dir), fmt="deepmd/npy")
    assert (system_dir / "type_map.raw").read_text().split() == ["O", "H", "C"]
    teacher = DeepPot(str(run_dir / summary["models"]["finetune.water"]))
    n = len(system)
    e, f, v = teacher.eval(
        system["coords"].reshape(n, -1), system["cells"].reshape(n, 9), system["atom_types"]
    )[:3]
    assert np.allclose(system["energies"], e.reshape(-1), atol=1e-6)
    assert np.allclose(system["forces"], f.reshape(system["forces"].shape), atol=1e-6)
    assert np.allclose(system["virials"].reshape(n, 9), v.reshape(n, 9), atol=1e-5)


def test_compression_drift_and_the_side_by_side_figures(distill_run):
    run_dir, _ = distill_run
    summary = _summary(run_dir)
    drift = summary["steps"]["compress-water"]["parameters"]["metrics"]
    assert drift["energy_drift_per_atom"] <= 1e-4 and drift["force_drift"] <= 1e-3
    assert drift["compressed_size_bytes"] > 0
    rows = {(t["role"], t["model"]): t["metrics"] for t in summary["tests"] if t["role"]}
    assert set(rows) == {
        ("teacher", "finetune.water"),
        ("student", "distill.water"),
        ("compressed", "compress.water"),
    }
    for metrics in rows.values():
        assert metrics["us_per_atom"] > 0 and math.isfinite(metrics["force_rmse"])
        assert metrics["nve_runs"] == 1 and "nve_stable" in metrics
    assert rows[("teacher", "finetune.water")]["speedup_vs_teacher"] == 1.0
    student, compressed = rows[("student", "distill.water")], rows[("compressed", "compress.water")]
    assert compressed["force_rmse_vs_teacher"] == pytest.approx(student["force_rmse_vs_teacher"], abs=1e-3)
    metrics_json = json.loads((run_dir / "metrics.json").read_text())
    assert {r["role"] for r in metrics_json} >= {"teacher", "student", "compressed"}
    models = summary["models"]
    assert {"distill.water", "compress.water"} <= set(models)


@pytest.fixture(scope="module")
def fake_distill_run(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("distill-fake")
    result = _submit(tmp, LAMFLOW_DP=FAKE_DP_COMMAND)
    assert result.returncode == 0, result.stdout[-3000:]
    return tmp / "run"


def _work(run_dir: Path, key: str) -> Path:
    return run_dir / "steps" / key / "workdir" / "work"


def test_fake_dp_distill_outputs_match_the_real_ones(distill_run, fake_distill_run):
    """compress, show, student and the in-process evaluations: same files, layouts and figures."""
    import zipfile

    from lamflow.ops.dp import model_type_map

    real_dir, result = distill_run
    assert result.returncode == 0
    fake_dir = fake_distill_run
    for key in ("student-water", "compress-water", "label-water", "evaluate-water"):
        real = {p.name for p in _work(real_dir, key).iterdir() if p.name != "systems"}
        fake = {p.name for p in _work(fake_dir, key).iterdir() if p.name != "systems"}
        assert fake <= real, f"{key}: the fake writes {sorted(fake - real)} the real dp does not"
    real_c, fake_c = (
        zipfile.ZipFile(_work(d, "compress-water") / "model-compressed.pth") for d in (real_dir, fake_dir)
    )
    real_names = {n.split("/", 1)[1] for n in real_c.namelist()}
    fake_names = {n.split("/", 1)[1] for n in fake_c.namelist()} - {"extra/fake_dp.json"}
    assert fake_names <= real_names
    assert ("extra/data_modifier.pth" in fake_names) == ("extra/data_modifier.pth" in real_names)
    real_s, fake_s = (_summary(d) for d in (real_dir, fake_dir))
    assert model_type_map(real_dir / real_s["models"]["distill.water"]) == ["O", "H", "C"]  # real dp show
    for key, output in (("compress-water", "metrics"), ("label-water", "report")):
        assert set(fake_s["steps"][key]["parameters"][output]) == set(
            real_s["steps"][key]["parameters"][output]
        ), key
    real_rows = {t["model"]: set(t["metrics"]) for t in real_s["tests"] if t["role"]}
    fake_rows = {t["model"]: set(t["metrics"]) for t in fake_s["tests"] if t["role"]}
    assert fake_rows == real_rows


def test_the_loops_model_devi_and_selection_on_real_models_and_real_md(distill_run, tmp_path, monkeypatch):
    """Issue 24's exploration-side steps on what the real run made: the teacher and the student as a
    two-model ensemble on the collected MD branches (real DeePMD-kit inference), then a selection."""
    from ase.io import read
    from dflow.python import OPIO

    from lamflow.ops.dp import deep_potential
    from lamflow.ops.model_devi import ModelDeviOP
    from lamflow.ops.select_frames import PICKED, SelectFramesOP

    run_dir, result = distill_run
    assert result.returncode == 0
    summary = _summary(run_dir)
    branches = run_dir / summary["steps"]["collect-water"]["outputs"]["branches"]
    teacher, student = (run_dir / summary["models"][m] for m in ("finetune.water", "distill.water"))
    monkeypatch.chdir(tmp_path)
    devi = ModelDeviOP().execute(
        OPIO({"models": 2, "branches": branches, "model1": teacher, "model2": student})
    )
    found = json.loads(Path(devi["deviations"]).read_text())
    values = [v for branch in found.values() for v in branch["max_devi_f"]]
    assert values and all(v is not None and 0 < v < 100 for v in values)  # eV/Å: finite, real disagreement
    # the last frame of one branch by hand: both models' forces, max over atoms of |std over models|
    name = sorted(found)[0]
    frame = read(branches / name / "trajectory.extxyz", index=-1)
    types = [["O", "H", "C"].index(s) for s in frame.get_chemical_symbols()]
    coords, cell = frame.positions.reshape(1, -1), frame.cell.array.reshape(1, 9)
    forces = np.stack(
        [deep_potential(m).eval(coords, cell, types)[1].reshape(-1, 3) for m in (teacher, student)]
    )
    expected = float(np.max(np.linalg.norm(np.std(forces, axis=0), axis=-1)))
    assert found[name]["max_devi_f"][-1] == pytest.approx(expected, rel=1e-5)
    lo, hi = float(np.median(values)), max(values) + 1.0
    chosen = {"lo": lo, "hi": hi, "max_picks": 3, "random_baseline": False, "seed": 0}
    picked = SelectFramesOP().execute(
        OPIO({**chosen, "branches": branches, "deviations": Path(devi["deviations"])})
    )
    report = picked["report"]
    assert report["explored"] == len(values) == report["accurate"] + report["candidate"] + report["failed"]
    assert report["candidate"] == report["picked"] + report["adjacent"] + report["over_budget"]
    assert (
        1 <= report["picked"] <= 3
        and len(read(Path(picked["picked"]) / PICKED, index=":")) == report["picked"]
    )
