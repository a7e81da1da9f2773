"""A property study run end to end with the fake dp: the fine-tunes start from the pretrained descriptor
with a new property fitting net, the tests report each component against the train mean, and the report
and the CLI show them (tables, learning curves and parity plots per component). One run, read by one
test."""

from __future__ import annotations

import csv
import json

from tests.conftest import run_cli
from tests.workflows.stages.test_property import finetune_property_spec

PNG = b"\x89PNG\r\n\x1a\n"


def test_a_property_study_runs_and_reports_each_component(write_spec, fake_dp, tmp_path):
    spec = finetune_property_spec()
    spec["stages"]["finetune"] = spec["stages"]["finetune"][1:]  # the property fine-tune only
    spec["stages"]["test"] = [{"models": ["finetune.band"], "datasets": ["qm9"]}]
    spec["registry"] = {"promote_gate": {"dataset": "qm9", "metric": "property_rmse"}}
    run = tmp_path / "run"
    done = run_cli(
        "submit", str(write_spec(spec)), "--run-dir", str(run), env={"LAMFLOW_REPORT": "1"} | fake_dp.env
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "Property learning curves" in done.stdout and "lumo" in done.stdout
    assert "Property tests" in done.stdout and "Test errors" not in done.stdout  # no energy model tested
    trains = [c for c in fake_dp.calls() if c[1] == "train" and "--finetune" in c]
    assert len(trains) == 3 and all(c[c.index("--model-branch") + 1] == "RANDOM" for c in trains)
    # --model-branch RANDOM: DeePMD-kit keeps the input's fitting net and takes the checkpoint's descriptor;
    # the fake does the same, and its lcurve.out has the property loss's columns
    lcurves = sorted(run.glob("steps/transfer-qm9-*-n10-r1/workdir/work/lcurve.out"))
    assert len(lcurves) == 2 and all(
        p.read_text().split()[:4] == ["#", "step", "mae_trn", "lr"] for p in lcurves
    )
    completed = [
        json.loads(p.read_text())
        for p in run.glob("steps/transfer-qm9-pretrain-*-n10-r1/workdir/work/out.json")
    ]
    assert completed and all(c["model"]["fitting_net"]["type"] == "property" for c in completed)
    assert all(c["model"]["descriptor"]["type"] == "dpa2" for c in completed)  # the checkpoint's
    report = run / "report"
    rows = [r for r in csv.DictReader((report / "metrics.csv").open()) if r["property"]]
    assert len(rows) == 5 and {r["protocol"] for r in rows} == {"finetune", "scratch", "test"}
    for row in rows:
        assert row["property_components"] == "lumo homo gap"
        assert len(row["property_rmse_by_component"].split()) == 3
        assert float(row["dummy_property_rmse"]) > 0 and 0 < float(row["normalized_property"]) <= 1
    metrics = json.loads((report / "metrics.json").read_text())
    points = [p for p in metrics["learning_curves"] if p["property"] == "band_prop"]
    assert {(p["protocol"], p["train_frames"]) for p in points} == {
        (p, n) for p in ("finetune", "scratch") for n in (10, 40)
    }
    assert all("property_rmse_2" in p["mean"] and "dummy_property_rmse_0" in p["mean"] for p in points)
    figures = json.loads((report / "plots.json").read_text())
    for figure in figures:
        assert (report / figure["file"]).read_bytes()[:8] == PNG
    (curve,) = [f for f in figures if f["kind"] == "learning-curve"]
    assert curve["series"] == ["fine-tuned from pretrain.molecules", "from scratch", "dummy (train mean)"]
    parity = [f for f in figures if f["kind"] == "parity"]
    assert len(parity) == 3 and all(
        f["series"] == ["0000-data_0", "0001-data_1", "0002-data_2"] for f in parity
    )
    page = (report / "index.html").read_text()
    assert "Property test errors" in page and "lumo" in page

    # the registry records the property model with its per-component metrics; promotion is gated on them
    from lamflow.workflows import api
    from lamflow.workflows.settings import Settings

    settings = Settings(store=fake_dp.env["LAMFLOW_STORE"])
    (band,) = [m for m in api.models(settings)[0] if m.reference == "finetune.band"]
    assert band.gate == {"dataset": "qm9@test", "metric": "property_rmse"}
    assert band.metrics["qm9@test"]["property_rmse"] > 0 and "property_rmse_2" in band.metrics["qm9@test"]
    assert api.model_promote(band.id, settings) == (band, None)  # the first of its channel
