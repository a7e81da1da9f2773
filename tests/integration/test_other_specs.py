"""Specs other than the demo, with the real DeePMD-kit through the installed CLI (slow): a step that fails
inside DeePMD-kit, someone else's single-task DPA-3 spec on the shared water data, and a fine-tune whose
data hold elements its checkpoint never saw (DeePMD-kit's warning reaches the summary and the terminal).
Apart from tests/integration/test_pipeline.py so that the two share the slow tier's two workers."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.conftest import DEMO_DATA, SHARED_DATASETS, minimal_spec, run_cli_process

pytestmark = pytest.mark.slow


def test_failing_step_fails_the_run_with_its_error(tmp_path, write_spec):
    """DeePMD-kit fails the pretraining (an activation it does not know): the run fails with its error and
    the steps after it are skipped. One head and no fine-tune: only one step group's worker starts."""
    spec = minimal_spec()
    spec["stages"] = {"pretrain": {"heads": {"water": {"datasets": ["water"]}}, "training": {"steps": 10}}}
    spec["model"]["descriptor"] = {"repinit": {"activation_function": "no-such-activation"}}
    out = run_cli_process("submit", str(write_spec(spec)), "--run-dir", str(tmp_path / "bad-run"))
    assert out.returncode == 1
    summary = json.loads((tmp_path / "bad-run" / "summary.json").read_text())
    assert summary["status"] == "Failed"
    assert summary["steps"]["pretrain"]["phase"] == "Failed"
    assert summary["error"].startswith("step pretrain failed:")
    assert all(r["phase"] == "Skipped" for k, r in summary["steps"].items() if k != "pretrain")
    assert "✗ pretrain" in out.stdout
    assert Path(tmp_path / "bad-run" / "spec.yaml").exists()


@pytest.mark.skipif(not SHARED_DATASETS.exists(), reason="../shared not present")
def test_someone_elses_spec_single_task_dpa3(tmp_path, write_spec):
    """A differently shaped spec on other data runs unchanged: single-head DPA-3 pretraining on the full
    water set (a system with two set.* folders), validation data, a random-fitting fine-tune, all frames."""
    water = SHARED_DATASETS / "water_h2o"
    spec = {
        "name": "water-dpa3",
        "datasets": {
            "train": {"path": str(water / "data_1")},
            "valid": {"path": str(water / "data_3")},
            "small": {"path": str(water / "data_0")},
        },
        "model": {"preset": "dpa3-tiny", "fitting_net": {"neuron": [16, 16]}},
        "stages": {
            "pretrain": {
                "heads": {"h2o": {"datasets": ["train"], "validation": ["valid"]}},
                "training": {"steps": 6, "batch_size": 1, "disp_freq": 3},
            },
            "finetune": [
                {
                    "name": "again",
                    "from": {"head": "random"},
                    "datasets": ["small"],
                    "training": {"steps": 4, "batch_size": 1},
                }
            ],
            "test": [{"models": ["pretrain.h2o", "finetune.again"], "datasets": ["valid"], "frames": 3}],
        },
    }
    out = run_cli_process(
        "submit", str(write_spec(spec)), "--run-dir", str(tmp_path / "run"), "--output", "json"
    )
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr
    summary = json.loads(out.stdout)
    inp = json.loads((tmp_path / "run" / summary["steps"]["pretrain"]["outputs"]["input_json"]).read_text())
    assert inp["model"]["descriptor"]["type"] == "dpa3" and "model_dict" not in inp["model"]
    assert inp["training"]["validation_data"]["systems"]
    lcurve = summary["steps"]["pretrain"]["parameters"]["lcurve_last"]
    assert lcurve["step"] == 6 and "rmse_e_val" in lcurve
    assert [t["metrics"]["frames"] for t in summary["tests"]] == [3, 3]


def test_real_finetune_that_adds_elements_surfaces_deepmd_warning(tmp_path, write_spec):
    """Pretrain on water (O, H), fine-tune that checkpoint on GeTe: DeePMD-kit warns that Ge and Te are
    randomly initialised, and the warning reaches summary.json and the terminal."""
    water = {
        "name": "water-only",
        "datasets": {"water": {"path": str(DEMO_DATA / "water/train")}},
        "model": {"preset": "dpa2-tiny"},
        "stages": {
            "pretrain": {"heads": {"h2o": {"datasets": ["water"]}}, "training": {"steps": 2, "batch_size": 1}}
        },
    }
    first = run_cli_process(
        "submit", str(write_spec(water, "water.yaml")), "--run-dir", str(tmp_path / "a"), "--output", "json"
    )
    assert first.returncode == 0, first.stdout[-2000:] + first.stderr
    checkpoint = tmp_path / "a" / json.loads(first.stdout)["checkpoints"]["pretrain"]
    gete = {
        "name": "to-gete",
        "datasets": {"gete": {"path": str(DEMO_DATA / "gete/train")}},
        "model": {"preset": "dpa2-tiny"},
        "stages": {
            "finetune": [
                {"name": "gete", "from": {"model_file": str(checkpoint)}, "datasets": ["gete"],
                 "training": {"steps": 2, "batch_size": 1}}
            ]
        },
    }  # fmt: skip
    second = run_cli_process("submit", str(write_spec(gete, "gete.yaml")), "--run-dir", str(tmp_path / "b"))
    assert second.returncode == 0, second.stdout[-2000:] + second.stderr
    summary = json.loads((tmp_path / "b" / "summary.json").read_text())
    warning = "types not in the pretrained model are randomly initialised: ['Ge', 'Te']"
    assert summary["steps"]["finetune-gete"]["warnings"] == [warning]
    assert warning in second.stdout
