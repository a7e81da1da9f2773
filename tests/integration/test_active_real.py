"""examples/active.yaml, shortened, end to end with the real DeePMD-kit, real ASE MD and real PySCF DFT
(slow): a 2-iteration concurrent-learning loop — an ensemble of fine-tunes, MD driven by its first model,
DeePMD-kit's model deviation, selection, PySCF labels (PBE/6-31G) in two label steps, the random
baseline — whose second iteration trains on the frames the first labelled, each member fine-tuning its own
checkpoint of the first."""

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
    active = spec["stages"]["active"][0]
    active["training"]["steps"] = 20
    active["explore"].update({"steps": 8, "steps_by_iteration": [8], "dump_every": 4})
    active["select"].update({"lo": 1e-6, "hi": 1e3, "max_picks": 2})
    active["converge"] = {"accurate_fraction": 0.999, "max_iterations": 2}
    active["label"]["parallel"] = 2  # two PySCF steps, one pick each
    active["init_from_previous"] = True  # iteration 2: each member from its own checkpoint
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
    loop = summary["loops"]["active-methanol"]
    assert loop["stopped"] and not loop["converged"] and "max_iterations (2)" in loop["reason"]
    for row in loop["iterations"]:
        assert row["explored"] == 3 and row["picked"] == 2 and row["labelled"] == 2  # dumps 0, 4, 8
        assert row["test_force_rmse"] > 0 and row["random_test_force_rmse"] > 0
    assert loop["baseline"] is not None
    # iteration 2 trained on iteration 1's PySCF labels: 1 start system + 1 labelled one
    work = run_dir / "steps" / "active-methanol-i002-train-1" / "workdir" / "work"
    config = json.loads((work / "input.json").read_text())
    systems = config["training"]["training_data"]["systems"]
    assert len(systems) == 3 and sum("i001-s" in s for s in systems) == 2  # one system per label step
    command = (work / "train.log").read_text().splitlines()[0]
    assert "--finetune" in command and "--model-branch" not in command  # its own checkpoint of iteration 1
    labels = run_dir / summary["steps"]["active-methanol-i001-label-1"]["outputs"]["labels"]
    energies = np.load(next(Path(labels).glob("*/set.000/energy.npy"))).ravel()
    assert all(-3200 < e < -3100 for e in energies)  # methanol at PBE/6-31G: about -115.5 Hartree
    assert summary["models"]["active.methanol"] == "models/active-methanol.pth"
    assert (run_dir / "report" / "loop-active-methanol.png").is_file()
