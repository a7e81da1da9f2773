"""Property models with the real DeePMD-kit (slow): a 2-head pretraining, then its descriptor fine-tuned
with a new property fitting net (a study on 10 QM9 molecules against the same architecture from scratch,
and finetune.band on the whole train part), all tested per component; and the fake dp's files for the
same spec checked against the real ones."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from tests.conftest import FAKE_DP_COMMAND, run_cli_process
from tests.workflows.stages.test_property import property_spec

pytestmark = pytest.mark.slow

FINE_TUNE = "transfer-qm9-pretrain-molecules-qm9-n10-r1"


def tiny_spec() -> dict:
    spec = property_spec({"learning_curve": {"sizes": [10], "training": {"steps": 20}}})
    spec["stages"] = {
        "pretrain": spec["stages"]["pretrain"],
        "finetune": [{"name": "band", "property": "band_prop", "from": {"head": "random"},
                      "datasets": ["qm9"], "training": {"steps": 20}}],
        "transfer": spec["stages"]["transfer"],
        "test": [{"models": ["finetune.band"], "datasets": ["qm9"]}],
    }  # fmt: skip
    return spec


def _work(run: Path, key: str) -> Path:
    return run / "steps" / key / "workdir" / "work"


def test_a_real_property_fine_tune_trains_tests_and_matches_the_fake(write_spec, tmp_path):
    from lamflow.ops.evaluation.properties import parse_property_metrics

    spec_file = write_spec(tiny_spec())
    runs = {}
    for kind, extra in (("real", {}), ("fake", {"LAMFLOW_DP": FAKE_DP_COMMAND})):
        run = tmp_path / kind
        done = run_cli_process("submit", str(spec_file), "--run-dir", str(run), cwd=tmp_path,
                               env={"LAMFLOW_STORE": str(tmp_path / f"store-{kind}"), **extra})  # fmt: skip
        assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
        runs[kind] = run
    real, fake = runs["real"], runs["fake"]
    summary = json.loads((real / "summary.json").read_text())
    tuned = _work(real, FINE_TUNE)
    log = (tuned / "train.log").read_text(errors="replace")
    assert "--model-branch RANDOM" in log.splitlines()[0]
    completed = json.loads((tuned / "out.json").read_text())
    assert completed["model"]["fitting_net"]["type"] == "property"
    assert completed["model"]["fitting_net"]["task_dim"] == 3
    for key in (f"{FINE_TUNE}-test", "transfer-qm9-scratch-qm9-n10-r1-test", "test-finetune-band-on-qm9"):
        metrics = summary["steps"][key]["parameters"]["metrics"]
        assert metrics["frames"] == 60
        for name in ("property_rmse", "property_rmse_0", "property_rmse_2", "dummy_property_rmse_1",
                     "normalized_property"):  # fmt: skip
            assert math.isfinite(metrics[name]) and metrics[name] > 0, (key, name)
    # the fake writes what the real dp writes: lcurve columns, the log's block, detail files
    for key in (FINE_TUNE, "transfer-qm9-scratch-qm9-n10-r1"):
        columns = [(_work(r, key) / "lcurve.out").read_text().splitlines()[0].split() for r in (real, fake)]
        assert columns[0] == columns[1], (key, columns)
    key = f"{FINE_TUNE}-test"
    texts = [(_work(r, key) / "test.log").read_text() for r in (real, fake)]
    assert set(parse_property_metrics(texts[0])) == set(parse_property_metrics(texts[1]))
    names = [sorted(p.name for p in (_work(r, key) / "detail").iterdir()) for r in (real, fake)]
    assert names[0] == names[1] and len([n for n in names[0] if ".property.out." in n]) == 60
    for name in (n for n in names[0] if ".property.out." in n):
        lines = [(_work(r, key) / "detail" / name).read_text().splitlines() for r in (real, fake)]
        assert lines[0][0].split(":", 1)[1] == lines[1][0].split(":", 1)[1]  # "data_property pred_property"
        assert [len(x.split()) for x in lines[0][1:]] == [len(x.split()) for x in lines[1][1:]]
