"""The README demo visibly learns (slow, real DeePMD-kit): on the held-out GeTe frames the fine-tuned
model's force RMSE is below 0.8x the zero-shot heads' and below the spread of the labels themselves."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest

from tests.conftest import DEMO_DATA, EXAMPLES, run_cli_process

pytestmark = pytest.mark.slow


def test_fine_tuning_beats_zero_shot_and_the_label_spread(tmp_path):
    result = run_cli_process(
        "submit",
        str(EXAMPLES / "demo.yaml"),
        "--run-dir",
        str(tmp_path / "run"),
        cwd=tmp_path,
        env={"LAMFLOW_STORE": str(tmp_path / "store")},
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    tests = json.loads((tmp_path / "run" / "metrics.json").read_text())
    force = {t["model"]: t["metrics"]["force_rmse"] for t in tests if t["dataset"] == "gete-test"}
    zero_shot = min(force["pretrain.water"], force["pretrain.molecules"])
    labels = np.concatenate([np.load(p).ravel() for p in (DEMO_DATA / "gete/test").glob("*/set.*/force.npy")])
    spread = float(np.sqrt(np.mean(labels**2)))  # what predicting zero force would score
    assert force["finetune.gete"] < 0.8 * zero_shot, force
    assert force["finetune.gete"] < spread, (force, spread)
    # the step records where real dp trained, read from DeePMD-kit's own start-up summary
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    expected = "CPU" if os.environ.get("CUDA_VISIBLE_DEVICES", "unset") == "" or not _cuda() else "CUDA"
    for step in ("pretrain", "finetune-gete"):
        assert summary["steps"][step]["parameters"]["device"].startswith(expected), summary["steps"][step]


def _cuda() -> bool:
    import torch

    return torch.cuda.is_available()
