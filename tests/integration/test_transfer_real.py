"""A transferability study with real DeePMD-kit (slow), from a raw VASP OUTCAR: 1 model x 1 dataset x 2 sizes
+ scratch; the convert-datasets step converts the OUTCAR in the workflow, and the report is written with
finite metrics and valid PNGs holding the expected series."""

from __future__ import annotations

import csv
import json
import math

import pytest

from tests.conftest import DEMO_DATA, EXAMPLES, run_cli_process

pytestmark = pytest.mark.slow

PNG = b"\x89PNG\r\n\x1a\n"


def test_a_tiny_transfer_study_runs_and_reports(write_spec, tmp_path):
    spec = {
        "name": "transfer-real",
        "datasets": {
            "water": {"path": str(DEMO_DATA / "water/train")},
            "h2o": {"path": str(EXAMPLES / "data/raw/vasp_h2o/OUTCAR"), "format": "vasp/outcar",
                    "split": {"test_frames": 3}},  # 10 frames: 7 train, 3 test
        },
        "model": {"preset": "dpa2-tiny"},
        "stages": {
            "pretrain": {"heads": {"water": {"datasets": ["water"]}}, "training": {"steps": 20}},
            "transfer": [{
                "name": "h2o", "models": ["pretrain.water"], "datasets": ["h2o"],
                "learning_curve": {"sizes": [2, 7], "repeats": 1, "training": {"steps": 20}},
                "gates": [{"model": "pretrain.water", "dataset": "h2o", "metric": "force_rmse",
                           "max": 100.0}],  # eV/Å: passes (a capped normalised error with max 1 is refused)
            }],
        },
    }  # fmt: skip
    done = run_cli_process("submit", str(write_spec(spec)), "--run-dir", str(tmp_path / "run"), cwd=tmp_path,
                   env={"LAMFLOW_STORE": str(tmp_path / "store"), "LAMFLOW_REPORT": "1"})  # fmt: skip
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert summary["steps"]["convert-datasets"]["phase"] == "Succeeded"
    report = tmp_path / "run" / "report"
    rows = list(csv.DictReader((report / "metrics.csv").open()))
    assert sorted((r["protocol"], r["train_frames"]) for r in rows) == [
        ("finetune", "2"), ("finetune", "7"), ("scratch", "2"), ("scratch", "7"), ("unshifted", ""),
        ("zero-shot", ""),
    ]  # fmt: skip
    for row in rows:
        for key in ("energy_rmse_per_atom", "force_rmse", "dummy_force_rmse", "normalized_error"):
            assert math.isfinite(float(row[key])) and float(row[key]) > 0, (key, row)
    figures = json.loads((report / "plots.json").read_text())
    for figure in figures:
        assert (report / figure["file"]).read_bytes()[:8] == PNG
    (curve,) = [f for f in figures if f["kind"] == "learning-curve"]
    assert curve["series"] == ["fine-tuned from pretrain.water", "from scratch", "zero-shot pretrain.water",
                               "dummy (formula only)"]  # fmt: skip
    assert len([f for f in figures if f["kind"] == "parity"]) == 4
    assert (
        len([f for f in figures if f["kind"] == "training-curve"]) == 5
    )  # pretrain, 2 fine-tunes, 2 scratch
    page = (report / "index.html").read_text()
    assert page.count("data:image/png;base64,") == len(figures)
    assert "✓ gate" in done.stdout
