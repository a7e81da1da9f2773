"""Resume of killed and failed runs, and concurrent submits sharing one store (fake dp, fast tier)."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

from tests.conftest import LAMFLOW, FakeDp, run_cli
from tests.workflows.engines.test_cache import _phases, _spec, _summary


def test_killed_training_resumes_from_its_checkpoint(tmp_path):
    fake = FakeDp(tmp_path / "calls.jsonl")
    spec = _spec(tmp_path, pretrain_save=50)
    run_dir = tmp_path / "run"
    killed = run_cli(
        "submit",
        str(spec),
        "--run-dir",
        str(run_dir),
        env={**fake.env, "LAMFLOW_FAKE_DP_KILL_AFTER_SAVE": "1"},
    )
    assert killed.returncode == 1 and _phases(run_dir)["pretrain"] == "Failed"
    work = run_dir / "steps" / "pretrain" / "workdir" / "work"
    assert sorted(p.name for p in work.glob("model.ckpt-*.pt")) == ["model.ckpt-50.pt"]

    resumed = run_cli("resume", str(run_dir), env=fake.env)
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    restart = [c for c in fake.calls() if c[:2] == ["--pt", "train"] and "--restart" in c]
    assert restart == [["--pt", "train", "input.json", "--restart", "model.ckpt-50.pt"]]
    steps = [
        int(line.split()[0])
        for line in (work / "lcurve.out").read_text().splitlines()
        if not line.startswith("#")
    ]
    assert steps == sorted(set(steps)) and steps[0] == 1 and steps[-1] == 200 and any(s > 50 for s in steps)
    summary = _summary(run_dir)
    assert summary["status"] == "Succeeded" and summary["attempts"] == 2
    assert set(summary["steps"]) == set(_phases(run_dir)) and set(_phases(run_dir).values()) == {"Succeeded"}

    again = run_cli("resume", str(run_dir), env=fake.env)
    assert again.returncode == 2 and "already succeeded" in again.stderr


def test_resume_refuses_a_missing_run_and_a_changed_spec(tmp_path):
    fake = FakeDp(tmp_path / "calls.jsonl")
    missing = run_cli("resume", str(tmp_path / "nope"), env=fake.env)
    assert missing.returncode == 2 and "no such run" in missing.stderr
    spec = _spec(tmp_path)
    failed = run_cli(
        "submit",
        str(spec),
        "--run-dir",
        str(tmp_path / "run"),
        env={**fake.env, "LAMFLOW_FAKE_DP_FAIL": "test"},
    )
    assert failed.returncode == 1
    spec.write_text(spec.read_text().replace("steps: 200", "steps: 201"))
    changed = run_cli("resume", str(tmp_path / "run"), env=fake.env)
    assert changed.returncode == 2 and "changed since it was submitted" in changed.stderr
    assert changed.stderr.count("\n") == 1


def test_two_concurrent_submits_leave_the_store_consistent(tmp_path):
    from lamflow.workflows.store import trees
    from lamflow.workflows.store.backends import LocalBackend

    fake = FakeDp(tmp_path / "calls.jsonl")
    spec = _spec(tmp_path)
    env = {**__import__("os").environ, **fake.env}
    procs = [
        subprocess.Popen(
            [str(LAMFLOW), "submit", str(spec), "--run-dir", str(tmp_path / f"r{i}")],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        for i in (1, 2)
    ]
    assert [p.wait(300) for p in procs] == [0, 0]
    store = LocalBackend(Path(fake.env["LAMFLOW_STORE"]))
    manifests = [k for k in store.keys("steps/") if k.endswith("manifest.json")]
    assert len(manifests) == 4
    for key in manifests:
        for blob in json.loads(store.get_bytes(key) or b"{}")["blobs"]:
            assert store.exists(f"{trees.BLOBS}/{blob}")
    assert not [p for p in Path(fake.env["LAMFLOW_STORE"]).rglob(".tmp-*")]
