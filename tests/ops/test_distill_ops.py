"""The distillation ops in-process against the fake dp (its DeepPot and ASE calculator): exploration,
collection, selection, teacher labels, student, compression with the drift check, and the evaluation."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
from dflow.python import FatalError

from lamflow.ops.collect import CollectOP, CollectParams
from lamflow.ops.compress import CompressOP, CompressParams
from lamflow.ops.dp import compress_command, deep_potential, parse_type_map, show_command
from lamflow.ops.dynamics.md import energy_drift, frame_problem
from lamflow.ops.evaluate import EvaluateOP, EvaluateParams, NveParams
from lamflow.ops.explore import ExploreOP, ExploreParams, StartStructure
from lamflow.ops.label import LabelOP, LabelParams, SelectParams, select
from lamflow.ops.student import StudentOP, StudentParams
from tests.fake_dp import save_frozen
from tests.ops.conftest import STAGED, formats

DESCRIPTOR = {"type": "se_e2_a", "sel": "auto", "rcut": 6.0, "rcut_smth": 0.5, "neuron": [8, 16]}


@pytest.fixture
def models(tmp_path: Path) -> dict[str, Path]:
    """Fake frozen models: a teacher and a student (different predictions)."""
    out = {}
    for name in ("teacher", "student"):
        path = tmp_path / f"{name}.pth"
        save_frozen(
            path, {"type_map": ["O", "H", "C"], "descriptor": DESCRIPTOR, "name": name}, frozen_by_freeze=True
        )
        out[name] = path
    return out


def explore_params(branch: str = "s0-300k", **changes) -> ExploreParams:
    values = dict(
        branch=branch,
        start=StartStructure(dataset="water", system=0, frame=0),
        temperature=300.0,
        steps=20,
        timestep_fs=0.5,
        dump_every=5,
        min_distance=0.5,
        dataset_formats=formats("water"),
    )
    values.update(changes)
    return ExploreParams(**values)


def test_explore_runs_md_on_the_teacher_and_dumps_its_predictions(run_op, models):
    from ase.io import read

    out = run_op(ExploreOP, explore_params(), teacher=models["teacher"], datasets=STAGED)
    report = out.report
    assert report["steps_done"] == 20 and report["frames"] == 5 and not report["exploded"]
    assert report["natoms"] == 192 and report["steps_per_s"] > 0
    frames = read(out.branch / "trajectory.extxyz", index=":")
    assert [f.info["md_step"] for f in frames] == [0, 5, 10, 15, 20]
    teacher = deep_potential(models["teacher"])
    f = frames[-1]
    e, force, _ = teacher.eval(
        f.positions.reshape(1, -1),
        np.asarray(f.cell).reshape(1, 9),
        [0 if s == "O" else 1 for s in f.get_chemical_symbols()],
    )
    assert f.get_potential_energy() == pytest.approx(float(e[0, 0]))
    assert np.allclose(f.get_forces(), force[0])
    assert json.loads((out.branch / "report.json").read_text()) == report


def test_explore_that_blows_up_is_reported_and_the_spec_decides(run_op, models):
    params = explore_params(min_distance=5.0)  # every water frame has atoms closer than 5 Å
    out = run_op(ExploreOP, params, teacher=models["teacher"], datasets=STAGED)
    assert out.report["exploded"] and out.report["exploded_at_step"] == 0
    assert "apart" in out.report["reason"] and out.report["frames"] == 0
    with pytest.raises(
        FatalError, match=r"MD at 300 K from water system 0 frame 0 blew up at step 0.*on_blowup: fail"
    ):
        run_op(
            ExploreOP,
            explore_params(min_distance=5.0, on_blowup="fail"),
            teacher=models["teacher"],
            datasets=STAGED,
        )


def test_explore_from_a_perturbed_copy(run_op, models):
    from lamflow.ops.explore import Perturbation

    params = explore_params(
        start=StartStructure(dataset="water", system=1, frame=3, perturbed_copy=1),
        perturb=Perturbation(copies=2, cell_fraction=0.02, atom_distance=0.05),
    )
    out = run_op(ExploreOP, params, teacher=models["teacher"], datasets=STAGED)
    assert "perturbed copy 1" in out.report["start"] and out.report["frames"] == 5


@pytest.fixture
def branches(run_op, models):
    """Three exploration branches: two good ones and one that blew up."""
    good = [
        run_op(
            ExploreOP,
            explore_params(f"s{i}-300k", start=StartStructure(dataset="water", system=i, frame=0)),
            teacher=models["teacher"],
            datasets=STAGED,
        ).branch
        for i in (0, 1)
    ]
    bad = run_op(
        ExploreOP,
        explore_params("s2-900k", min_distance=0.9, temperature=900.0),
        teacher=models["teacher"],
        datasets=STAGED,
    ).branch
    return [*good, bad]


def test_collect_merges_branches_and_collections(run_op, branches):
    first = run_op(CollectOP, CollectParams(parts=2), part1=branches[0], part2=branches[1]).branches
    assert sorted(p.name for p in first.iterdir()) == ["s0-300k", "s1-300k"]
    merged = run_op(CollectOP, CollectParams(parts=2), part1=first, part2=branches[2]).branches
    assert sorted(p.name for p in merged.iterdir()) == ["s0-300k", "s1-300k", "s2-900k"]
    with pytest.raises(FatalError, match="two branches named 's0-300k'"):
        run_op(CollectOP, CollectParams(parts=2), part1=first, part2=branches[0])


def test_label_selects_and_labels_with_the_teacher(run_op, branches, models):
    import dpdata

    merged = run_op(
        CollectOP, CollectParams(parts=3), part1=branches[0], part2=branches[1], part3=branches[2]
    ).branches
    out = run_op(
        LabelOP, LabelParams(stride=2, validation_fraction=0.25), branches=merged, teacher=models["teacher"]
    )
    r = out.report
    assert r["branches"] == 3 and len(r["exploded_branches"]) == 1
    assert r["dumped"] == 5 + 5 + r["exploded_branch"]
    assert r["stride"] == 2 * 2 and r["kept"] == 3 * 2
    assert sum(r["train"].values()) + sum(r["valid"].values()) == r["kept"]
    assert (out.labels / "train" / "H128O64" / "type_map.raw").read_text().split() == ["O", "H", "C"]
    system = dpdata.LabeledSystem(str(out.labels / "train" / "H128O64"), fmt="deepmd/npy")
    teacher = deep_potential(models["teacher"])
    e, f, v = teacher.eval(
        system["coords"].reshape(len(system), -1),
        system["cells"].reshape(len(system), 9),
        system["atom_types"],
    )
    assert np.allclose(system["energies"], e.reshape(-1))  # labels are the teacher's predictions
    assert np.allclose(system["forces"], f)
    assert np.allclose(system["virials"].reshape(-1, 9), v)
    assert json.loads((out.labels / "selection.json").read_text())["kept"] == r["kept"]


def test_no_frames_left_fails_with_the_counts(run_op, branches, models):
    merged = run_op(CollectOP, CollectParams(parts=1), part1=branches[2]).branches  # only the blown-up one
    with pytest.raises(
        FatalError,
        match=r"no frames left after selection \(dumped \d+, exploded_branch \d+.*nothing to train",
    ):
        run_op(LabelOP, LabelParams(), branches=merged, teacher=models["teacher"])


def _frame(x: float, energy: float = -1.0, force: float = 0.1):
    from ase import Atoms
    from ase.calculators.singlepoint import SinglePointCalculator

    atoms = Atoms("H2", positions=[[0, 0, 0], [x, 0, 0]], cell=[10, 10, 10], pbc=True)
    atoms.calc = SinglePointCalculator(atoms, energy=energy, forces=np.full((2, 3), force))
    return atoms


def test_select_counts_every_reason():
    frames = [
        _frame(1.0),
        _frame(1.0005),
        _frame(0.2),
        _frame(1.5, energy=math.nan),
        _frame(2.0, force=90.0),
        _frame(2.5),
    ]
    kept, counts = select(
        [({"branch": "a"}, frames), ({"branch": "b", "exploded": True}, [_frame(1.0)] * 3)],
        SelectParams(min_distance=0.5, max_force=50.0, duplicate_rmsd=0.01),
    )
    assert counts == {
        "dumped": 9,
        "exploded_branch": 3,
        "stride": 0,
        "non_finite": 1,
        "too_close": 1,
        "max_force": 1,
        "duplicate": 1,
        "max_frames": 0,
        "kept": 2,
    }
    assert [a.positions[1, 0] for a in kept] == [1.0, 2.5]
    kept, counts = select(
        [({"branch": "a"}, [_frame(1 + 0.1 * i) for i in range(10)])], SelectParams(max_frames=4)
    )
    assert counts["max_frames"] == 6 and len(kept) == 4
    assert kept[0].positions[1, 0] == 1.0 and kept[-1].positions[1, 0] == pytest.approx(1.9)


def test_student_trains_on_the_labels_and_freezes(run_op, branches, models, fake_dp):
    merged = run_op(CollectOP, CollectParams(parts=2), part1=branches[0], part2=branches[1]).branches
    labels = run_op(
        LabelOP, LabelParams(validation_fraction=0.2), branches=merged, teacher=models["teacher"]
    ).labels
    from lamflow.workflows.compile.deepmd_input import single_task_input
    from lamflow.workflows.spec.distill import StudentSpec

    student = StudentSpec(preset="se_e2_a-tiny")
    deepmd_input = single_task_input(
        student, ["O", "H"], student.training.model_copy(update={"steps": 4}), with_validation=True
    )
    out = run_op(StudentOP, StudentParams(deepmd_input=deepmd_input), labels=labels)
    assert out.model.is_file() and out.checkpoint.exists()
    written = json.loads(out.input_json.read_text())["training"]
    assert written["training_data"]["systems"] == [str(labels.resolve() / "train" / "H128O64")]
    assert written["validation_data"]["systems"] == [str(labels.resolve() / "valid" / "H128O64")]
    calls = [json.loads(line)["argv"][:2] for line in fake_dp.log.read_text().splitlines()]
    assert calls[-2:] == [["--pt", "train"], ["--pt", "freeze"]]


def test_compress_checks_the_drift(run_op, models, fake_dp):
    params = CompressParams(
        dataset="water-valid",
        max_energy_drift=1e-4,
        max_force_drift=1e-3,
        dataset_formats=formats("water-valid"),
    )
    out = run_op(CompressOP, params, model=models["student"], datasets=STAGED)
    assert out.model.name == "model-compressed.pth"
    assert 0 < out.metrics["force_drift"] < 1e-6 and out.metrics["frames"] == 4
    argv = json.loads(fake_dp.log.read_text().splitlines()[-1])["argv"]
    assert argv[:2] == ["--pt", "compress"] and argv[argv.index("-s") + 1] == "0.01"
    strict = params.model_copy(update={"max_force_drift": 1e-15})
    with pytest.raises(
        FatalError,
        match=r"water-valid: energy RMSE .* eV/atom \(tolerance 0.0001\), force RMSE .* \(tolerance 1e-15\)",
    ):
        run_op(CompressOP, strict, model=models["student"], datasets=STAGED)


def test_evaluate_puts_teacher_student_and_compressed_side_by_side(run_op, models):
    compressed = run_op(
        CompressOP,
        CompressParams(
            dataset="water-valid",
            max_energy_drift=1,
            max_force_drift=1,
            dataset_formats=formats("water-valid"),
        ),
        model=models["student"],
        datasets=STAGED,
    ).model
    roles = {"teacher": "finetune.t", "student": "distill.s", "compressed": "compress.s"}
    params = EvaluateParams(
        dataset="water-valid",
        frames=2,
        models=roles,
        repeats=1,
        warmup=1,
        nve=NveParams(
            steps=20,
            timestep_fs=0.5,
            temperature=300,
            dump_every=5,
            structures=1,
            tolerance=5e-4,
            min_distance=0.5,
        ),
        dataset_formats=formats("water-valid"),
    )
    out = run_op(
        EvaluateOP,
        params,
        teacher=models["teacher"],
        student=models["student"],
        compressed=compressed,
        datasets=STAGED,
    )
    rows = out.comparison
    assert list(rows) == ["finetune.t", "distill.s", "compress.s"]
    assert rows["finetune.t"]["speedup_vs_teacher"] == 1.0
    assert "force_rmse_vs_teacher" not in rows["finetune.t"]
    assert rows["distill.s"]["force_rmse_vs_teacher"] > 0
    assert rows["compress.s"]["force_rmse_vs_teacher"] == pytest.approx(
        rows["distill.s"]["force_rmse_vs_teacher"], rel=1e-6
    )
    for row in rows.values():
        assert row["frames"] == 2 and row["us_per_atom"] > 0 and row["nve_runs"] == 1
        assert row["nve_exploded"] == 0 and math.isfinite(row["nve_drift"]) and row["md_steps_per_s"] > 0
    assert json.loads(out.report.read_text())["models"] == rows


def test_md_helpers():
    assert energy_drift([(0.0, 1.0), (0.1, 1.2), (0.2, 1.4)]) == pytest.approx(2.0)
    with pytest.raises(ValueError):
        energy_drift([(0.0, 1.0)])
    atoms = _frame(0.3)
    assert "apart" in frame_problem(atoms, -1.0, np.zeros((2, 3)), 0.5)
    assert frame_problem(atoms, -1.0, np.array([[np.inf, 0, 0], [0, 0, 0]]), 0.1) == "non-finite forces"
    assert frame_problem(_frame(1.0), -1.0, np.zeros((2, 3)), 0.5) is None


def test_command_builders():
    assert (
        compress_command("m.pth", "c.pth", step=0.005, extrapolate=10, frequency=1000)[-8:]
        == [
            "-i",
            "m.pth",
            "-o",
            "c.pth",
            "-s",
            "0.005",
            "-e",
            "10",
            "-f",
            "1000",
        ][-8:]
    )
    with pytest.raises(ValueError):
        compress_command("m.pth", "c.pth", step=0)
    assert show_command("m.pth", "type-map")[-3:] == ["show", "m.pth", "type-map"]
    line = "[2026-11-25 08:14:20,117] DEEPMD INFO    The type_map is ['O', 'H', 'C', 'Ge', 'Te']"
    assert parse_type_map(line) == ["O", "H", "C", "Ge", "Te"]
    with pytest.raises(ValueError):
        parse_type_map("nothing here")
