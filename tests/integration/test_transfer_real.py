"""A transferability study with real DeePMD-kit (slow): 1 model x 1 dataset x 2 sizes + scratch; the report
is written with finite metrics and valid PNGs holding the expected series."""

from __future__ import annotations

import csv
import json
import math

import pytest

from tests.conftest import DEMO_DATA, run_cli

pytestmark = pytest.mark.slow

PNG = b"\x89PNG\r\n\x1a\n"


def test_a_tiny_transfer_study_runs_and_reports(write_spec, tmp_path):
    spec = {
        "name": "transfer-real",
        "datasets": {
            "water": {"path": str(DEMO_DATA / "water/train")},
            "gete": {"path": str(DEMO_DATA / "gete/train"), "split": {"test_frames": 4}},
        },
        "model": {"preset": "dpa2-tiny"},
        "stages": {
            "pretrain": {"heads": {"water": {"datasets": ["water"]}}, "training": {"steps": 20}},
            "transfer": [{
                "name": "gete", "models": ["pretrain.water"], "datasets": ["gete"],
                "learning_curve": {"sizes": [2, 8], "repeats": 1, "training": {"steps": 20}},
                "gates": [{"model": "pretrain.water", "dataset": "gete", "metric": "normalized_error",
                           "max": 1.0}],
            }],
        },
    }  # fmt: skip
    done = run_cli("submit", str(write_spec(spec)), "--run-dir", str(tmp_path / "run"), cwd=tmp_path,
                   env={"LAMFLOW_STORE": str(tmp_path / "store"), "LAMFLOW_REPORT": "1"})  # fmt: skip
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    report = tmp_path / "run" / "report"
    rows = list(csv.DictReader((report / "metrics.csv").open()))
    assert sorted((r["protocol"], r["train_frames"]) for r in rows) == [
        ("finetune", "2"), ("finetune", "8"), ("scratch", "2"), ("scratch", "8"), ("unshifted", ""),
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
