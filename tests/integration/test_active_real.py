"""examples/active.yaml, shortened, end to end with the real DeePMD-kit, real ASE MD and real PySCF DFT
(slow): a 2-iteration concurrent-learning loop — an ensemble of fine-tunes, MD driven by its first model,
DeePMD-kit's model deviation, selection, PySCF labels (PBE/6-31G) in two label steps, the random
baseline — whose second iteration trains on the frames the first labelled, each member fine-tuning its own
checkpoint of the first; and in the same run, distillation inside the loop: students trained from scratch,
labelled by the pretrained model as teacher, each continuing its own checkpoint in iteration 2."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import yaml

from tests.conftest import EXAMPLES, run_cli_process

pytestmark = pytest.mark.slow


def short_example(tmp: Path) -> Path:
    """examples/active.yaml with short trainings and MD, trust levels low enough that frames are picked in
    every iteration, and exactly 2 iterations (the example's own figures are in the README)."""
    spec = yaml.safe_load((EXAMPLES / "active.yaml").read_text())
    for dataset in spec["datasets"].values():
        dataset["path"] = str(EXAMPLES / dataset["path"])
    spec["stages"]["pretrain"]["training"]["steps"] = 20
    # the molecules head alone: the water head's 192-atom frames cost a minute of DeePMD-kit's statistics
    del spec["stages"]["pretrain"]["heads"]["water"], spec["datasets"]["water"]
    spec["stages"]["test"] = spec["stages"]["test"][:1]  # the loop's model tested once (no change-bias)
    active = spec["stages"]["active"][0]
    active["training"]["steps"] = 20
    active["explore"].update(
        {
            "steps": 8,
            "steps_by_iteration": [8],
            "dump_every": 4,
            "frames_per_system": 1,
            "temperatures": [300],
        }
    )
    active["select"].update({"lo": 1e-6, "hi": 1e3, "max_picks": 2})
    active["converge"] = {"accurate_fraction": 0.999, "max_iterations": 2}
    active["label"]["parallel"] = 2  # two PySCF steps, one pick each
    active["init_from_previous"] = True  # iteration 2: each member from its own checkpoint
    spec["stages"]["active"].append(
        {
            "name": "student",
            "student": {"preset": "se_e2_a-tiny"},  # from scratch: no `from`
            "datasets": ["h2o"],
            "ensemble": 2,
            "init_from_previous": True,
            "training": {"steps": 20},
            "explore": {"datasets": ["h2o"], "temperatures": [300], "steps": 8, "dump_every": 4},
            "select": {"lo": 1e-6, "hi": 1e3, "max_picks": 2},
            "label": {"teacher": {"model": "pretrain.molecules"}},
            "converge": {"accurate_fraction": 0.999, "max_iterations": 2},
        }
    )
    path = tmp / "active.yaml"
    path.write_text(yaml.safe_dump(spec, sort_keys=False))
    return path


def test_a_real_two_iteration_loop_labels_with_pyscf_and_retrains_on_its_labels(tmp_path):
    run_dir = tmp_path / "run"
    done = run_cli_process(
        "submit", str(short_example(tmp_path)), "--run-dir", str(run_dir), cwd=tmp_path,
        env={"LAMFLOW_STORE": str(tmp_path / "store"), "LAMFLOW_REPORT": "1"},
    )  # fmt: skip
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    summary = json.loads((run_dir / "summary.json").read_text())
    loop = summary["loops"]["active-h2o"]
    assert loop["stopped"] and not loop["converged"] and "max_iterations (2)" in loop["reason"]
    for row in loop["iterations"]:
        assert row["explored"] == 3 and row["picked"] == 2 and row["labelled"] == 2  # dumps 0, 4, 8
        assert row["test_force_rmse"] > 0 and row["random_test_force_rmse"] > 0
    assert loop["baseline"] is not None
    # iteration 2 trained on iteration 1's PySCF labels: 1 start system + 1 labelled one
    work = run_dir / "steps" / "active-h2o-i002-train-1" / "workdir" / "work"
    config = json.loads((work / "input.json").read_text())
    systems = config["training"]["training_data"]["systems"]
    assert len(systems) == 3 and sum("i001-s" in s for s in systems) == 2  # one system per label step
    command = (work / "train.log").read_text().splitlines()[0]
    assert "--finetune" in command and "--model-branch" not in command  # its own checkpoint of iteration 1
    labels = run_dir / summary["steps"]["active-h2o-i001-label-1"]["outputs"]["labels"]
    energies = np.load(next(Path(labels).glob("*/set.000/energy.npy"))).ravel()
    assert all(-2100 < e < -2050 for e in energies)  # a water molecule at PBE/6-31G: about -76.3 Hartree
    assert summary["models"]["active.h2o"] == "models/active-h2o.pth"
    assert (run_dir / "report" / "loop-active-h2o.png").is_file()

    # distillation inside the loop, with real DeePMD-kit: students from scratch, then their own checkpoints
    student = summary["loops"]["active-student"]
    assert len(student["iterations"]) == 2 and not student["converged"]
    # 1 or 2 picks of the 3 dumps: the top one first, then none adjacent to it (the middle one has two)
    assert all(row["labelled"] == row["picked"] >= 1 for row in student["iterations"])
    for member in ("train-1", "train-2"):
        first, second = (
            (run_dir / "steps" / f"active-student-i00{i}-{member}" / "workdir" / "work" / "train.log")
            .read_text()
            .splitlines()[0]
            for i in (1, 2)
        )
        assert "--finetune" not in first and "--model-branch" not in first  # from scratch
        assert "--finetune" in second and "--model-branch" not in second  # its own checkpoint
    teacher_labels = run_dir / summary["steps"]["active-student-i001-label"]["outputs"]["labels"]
    forces = np.concatenate([np.load(f).ravel() for f in Path(teacher_labels).glob("*/set.000/force.npy")])
    picked = student["iterations"][0]["picked"]
    assert forces.size == picked * 3 * 3 and np.isfinite(forces).all() and abs(forces).max() > 0  # H2O frames
    assert summary["models"]["active.student"] == "models/active-student.pth"
