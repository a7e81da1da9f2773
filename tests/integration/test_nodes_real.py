"""Training across nodes with the real DeePMD-kit (slow): ``resources.pretrain.nodes: 2`` on the local
engine is two torchrun "nodes" on this machine — the command line a PyTorchJob's pods run — meeting at a
c10d rendezvous on 127.0.0.1, gloo on CPU (ops/training/cpu_ddp.py). DeePMD-kit must report a world of
two, its rank 0 write lcurve.out and the checkpoints, and the model freeze and test."""

from __future__ import annotations

import json
import math
import re

import pytest

from tests.conftest import DEMO_DATA, run_cli_process

pytestmark = pytest.mark.slow


def test_a_tiny_model_trains_on_two_local_nodes_then_freezes_and_tests(write_spec, tmp_path):
    spec = {
        "name": "two-nodes",
        "datasets": {
            "water": {"path": str(DEMO_DATA / "water/train")},
            "water-valid": {"path": str(DEMO_DATA / "water/valid")},
        },
        "model": {"preset": "dpa2-tiny", "descriptor": {"repinit": {"nsel": 120}}},
        "resources": {"pretrain": {"nodes": 2}},
        "stages": {
            "pretrain": {"heads": {"water": {"datasets": ["water"]}}, "training": {"steps": 10}},
            "test": [{"models": ["pretrain.water"], "datasets": ["water-valid"]}],
        },
    }
    run_dir = tmp_path / "run"
    done = run_cli_process("submit", str(write_spec(spec)), "--run-dir", str(run_dir), cwd=tmp_path,
                           env={"LAMFLOW_STORE": str(tmp_path / "store")})  # fmt: skip
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    work = run_dir / "steps" / "pretrain" / "workdir" / "work"
    logs = (work / "train.log").read_text() + (work / "train.node-1.log").read_text()
    assert sorted(re.findall(r"Rank: (\d)/(\d)", logs)) == [("0", "2"), ("1", "2")]  # DeePMD-kit's own line
    command = next(line for line in (work / "train.log").read_text().splitlines() if line.startswith("$ "))
    assert (
        "--nnodes=2" in command
        and "--rdzv_backend=c10d" in command
        and "lamflow.ops.training.cpu_ddp" in command
    )
    lcurve = [line for line in (work / "lcurve.out").read_text().splitlines() if not line.startswith("#")]
    assert int(lcurve[-1].split()[0]) == 10  # rank 0's learning curve, to the last step
    assert (work / "model.ckpt-10.pt").is_file()
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["status"] == "Succeeded"
    (test,) = summary["tests"]
    assert math.isfinite(test["metrics"]["force_rmse"])
