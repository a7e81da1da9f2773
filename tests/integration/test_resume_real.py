"""Resume with the real DeePMD-kit (slow): a run SIGKILLed (engine, workers and dp, as a lost node) after
the first checkpoint of its pretraining, and again after the first checkpoint of its fine-tuning, resumes
twice and ends with training continued from the checkpoints and complete lcurve.out files."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
import zipfile
from pathlib import Path

import pytest
import yaml

from tests.conftest import DEMO_DATA, LAMFLOW

pytestmark = pytest.mark.slow


def _descendants(pid: int) -> list[int]:
    import psutil

    try:
        return [p.pid for p in psutil.Process(pid).children(recursive=True)]
    except psutil.NoSuchProcess:
        return []


def _run_until_checkpoint(args: list[str], work: Path, timeout: float = 300) -> None:
    """Run the CLI and SIGKILL its whole process tree once ``work`` holds a complete model.ckpt-*.pt (a torn
    one is passed over on resume: tests/ops/training/test_common.py)."""
    proc = subprocess.Popen([str(LAMFLOW), *args], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + timeout
    while not any(zipfile.is_zipfile(p) for p in work.glob("model.ckpt-*.pt")):
        assert proc.poll() is None, "the run ended before its first checkpoint"
        assert time.monotonic() < deadline
        time.sleep(0.05)
    for pid in [proc.pid, *_descendants(proc.pid)]:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    proc.wait(30)


def _lcurve_steps(path: Path) -> list[int]:
    return [int(line.split()[0]) for line in path.read_text().splitlines() if line.strip() and line[0] != "#"]


def test_killed_run_resumes_training_from_checkpoints(tmp_path):
    spec = {
        "name": "resume",
        "datasets": {
            "water": {"path": str(DEMO_DATA / "water/train")},
            "gete": {"path": str(DEMO_DATA / "gete/train")},
        },
        "model": {"preset": "dpa2-tiny"},
        "stages": {
            "pretrain": {
                "heads": {"water": {"datasets": ["water"]}},
                "training": {"steps": 80, "save_freq": 20, "disp_freq": 20},
            },
            "finetune": [
                {
                    "name": "gete",
                    "from": {"head": "water"},
                    "datasets": ["gete"],
                    "training": {"steps": 60, "save_freq": 20, "disp_freq": 20},
                }
            ],
        },
    }
    spec_file = tmp_path / "spec.yaml"
    spec_file.write_text(yaml.safe_dump(spec, sort_keys=False))
    run_dir = tmp_path / "run"
    pretrain_work = run_dir / "steps" / "pretrain" / "workdir" / "work"
    finetune_work = run_dir / "steps" / "finetune-gete" / "workdir" / "work"

    _run_until_checkpoint(["submit", str(spec_file), "--run-dir", str(run_dir)], pretrain_work)
    assert not (pretrain_work / "model.ckpt-80.pt").exists()
    _run_until_checkpoint(["resume", str(run_dir)], finetune_work)
    assert not (finetune_work / "model.ckpt-60.pt").exists()
    done = subprocess.run([str(LAMFLOW), "resume", str(run_dir)], capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout + done.stderr

    for work, total in ((pretrain_work, 80), (finetune_work, 60)):
        log = (work / "train.log").read_text()
        restarts = [line for line in log.splitlines() if line.startswith("$ ") and "--restart" in line]
        assert len(restarts) == 1, log[-2000:]
        saved = int(restarts[0].rsplit("model.ckpt-", 1)[1].split(".pt")[0])
        assert saved > 0
        steps = _lcurve_steps(work / "lcurve.out")
        assert steps[-1] == total and any(s > saved for s in steps)
        assert (work / f"model.ckpt-{total}.pt").is_file()
    assert (
        "--finetune"
        not in [
            line for line in (finetune_work / "train.log").read_text().splitlines() if "--restart" in line
        ][0]
    )
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["status"] == "Succeeded" and summary["attempts"] == 3
    assert (run_dir / summary["models"]["finetune.gete"]).resolve().is_file()
