"""Step groups in the local engine (fast tier, fake dp): short steps share their group's worker process,
and each stays its own step — key, directory, log, phase, timing, failure — with the same results."""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import psutil

from tests.conftest import FakeDp, minimal_spec, run_cli
from tests.workflows.engines.test_local import _dp_processes_in, stop_while_running

AFTER_PRETRAIN = ("freeze-water", "freeze-molecules", "change-bias-pretrain-water-on-gete")


def _summary(run_dir: Path) -> dict:
    return json.loads((run_dir / "summary.json").read_text())


def _step_pids(fake: FakeDp, run_dir: Path) -> dict[str, int]:
    """step key -> pid of the process that ran its dp call (the last call, for fine-tune's two)."""
    steps = str(run_dir.resolve() / "steps") + "/"
    return {
        r["cwd"][len(steps) :].split("/")[0]: r["pid"] for r in fake.records() if r["cwd"].startswith(steps)
    }


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_grouped_steps_share_a_worker_and_give_the_same_results(tmp_path, write_spec):
    spec = write_spec(minimal_spec())
    runs = {}
    fakes = {}
    for name, extra, fork in (("grouped", [], "1"), ("alone", ["--no-group"], "0")):
        fake = fakes[name] = FakeDp(tmp_path / f"{name}.jsonl")
        run_dir = tmp_path / name
        env = {**fake.env, "LAMFLOW_FORK_STEPS": fork}  # alone: every step a fresh `python SCRIPT`
        out = run_cli("submit", str(spec), "--run-dir", str(run_dir), "--no-cache", *extra, env=env)
        assert out.returncode == 0, out.stdout + out.stderr
        runs[name] = (run_dir, _summary(run_dir), _step_pids(fake, run_dir))
    (g_dir, grouped, g_pids), (a_dir, alone, a_pids) = runs["grouped"], runs["alone"]

    plan = json.loads((g_dir / "plan.json").read_text())
    assert plan == json.loads((a_dir / "plan.json").read_text())  # grouping changes no plan
    assert {k: r["cache_key"] for k, r in grouped["steps"].items()} == {
        k: r["cache_key"] for k, r in alone["steps"].items()
    }
    assert [t["metrics"] for t in grouped["tests"]] == [t["metrics"] for t in alone["tests"]]
    for ref, path in grouped["models"].items():
        assert _sha(g_dir / path) == _sha(a_dir / alone["models"][ref]), ref

    members = plan["groups"]["after-pretrain"]
    assert set(AFTER_PRETRAIN) <= set(members)
    assert len({g_pids[k] for k in members}) == 1, "one worker ran the whole group"
    assert len({a_pids[k] for k in members}) == len(members), "--no-group: a process per step"
    assert grouped["steps"]["pretrain"]["group"] is None and grouped["steps"]["freeze-water"]["group"] == (
        "after-pretrain"
    )
    assert all(r["group"] is None for r in alone["steps"].values())
    # training steps: a process of their own, forked by the step launcher unless LAMFLOW_FORK_STEPS=0
    trainings = [r for r in fakes["grouped"].records() if r["argv"][:2] == ["--pt", "train"]]
    assert trainings and all("lamflow.ops.runtime.launcher" in r["started_by"] for r in trainings)
    assert len({g_pids[k] for k in ("pretrain", "finetune-gete")}) == 2
    fresh = [r for r in fakes["alone"].records() if r["argv"][:2] == ["--pt", "train"]]
    assert fresh and not any("launcher" in r["started_by"] for r in fresh)
    for key in members:  # each step keeps its own directory, log, phase and timing
        record = grouped["steps"][key]
        assert record["phase"] == "Succeeded" and record["duration_s"] is not None
        assert record["started_at"] <= record["finished_at"]
        log = (g_dir / "steps" / key / "log.txt").read_text()
        assert f"--pt {record['op']} " in log and log.count("DeePMD version: fake") == 1  # its own only
    status = run_cli("status", str(g_dir))
    assert status.returncode == 0 and all(k in status.stdout for k in members) and "worker" in status.stdout
    shown = json.loads(run_cli("status", str(g_dir), "--output", "json").stdout)["steps"]
    assert {k: shown[k]["group"] for k in members} == dict.fromkeys(members, "after-pretrain")


def test_failing_and_crashing_grouped_steps_fail_alone_and_resume_finishes(tmp_path, write_spec):
    """A step whose dp fails, then one that kills its worker (as the OOM killer would), each fail only
    themselves with their log tail; resume runs the group's remaining steps in a fresh worker."""
    fake = FakeDp(tmp_path / "calls.jsonl")
    run_dir = tmp_path / "r"
    bias_key = "change-bias-pretrain-water-on-gete"
    out = run_cli(
        "submit", str(write_spec(minimal_spec())), "--run-dir", str(run_dir), "--no-cache",
        env={**fake.env, "LAMFLOW_FAKE_DP_FAIL": "change-bias"},
    )  # fmt: skip
    assert out.returncode == 1
    steps = _summary(run_dir)["steps"]
    assert steps[bias_key]["phase"] == "Failed"
    assert "change-bias failed (LAMFLOW_FAKE_DP_FAIL)" in steps[bias_key]["error"]
    assert steps["freeze-water"]["phase"] == steps["freeze-molecules"]["phase"] == "Succeeded"
    assert steps["test-pretrain-water-on-gete-test-change-bias-gete"]["phase"] == "Skipped"
    log = (run_dir / "steps" / bias_key / "log.txt").read_text()
    assert "DEEPMD ERROR" in log and "FatalError" in log

    crash = run_cli(
        "resume", str(run_dir), "--no-cache", env={**fake.env, "LAMFLOW_FAKE_DP_CRASH": "change-bias"}
    )
    assert crash.returncode == 1
    bias = _summary(run_dir)["steps"][bias_key]
    assert bias["phase"] == "Failed" and "killed by signal 9 (SIGKILL)" in bias["error"]
    log = (run_dir / "steps" / bias_key / "log.txt").read_text()
    assert "fake (change-bias)" in log  # the output up to the crash is kept
    crashed_pid = _step_pids(fake, run_dir)[bias_key]

    again = run_cli("resume", str(run_dir), "--no-cache", env=fake.env)
    assert again.returncode == 0, again.stdout + again.stderr
    assert {r["phase"] for r in _summary(run_dir)["steps"].values()} == {"Succeeded"}
    assert _step_pids(fake, run_dir)[bias_key] != crashed_pid


def test_stop_interrupts_a_group_and_leaves_no_worker(tmp_path, write_spec):
    fake = FakeDp(tmp_path / "calls.jsonl")
    run_dir = tmp_path / "r"
    key = "change-bias-pretrain-water-on-gete"
    summary, workers = stop_while_running(
        [str(write_spec(minimal_spec())), "--no-cache"],
        {**os.environ, **fake.env, "LAMFLOW_FAKE_DP_SLEEP": "change-bias:60"},
        run_dir,
        key,
        60,
    )
    assert workers, "the run has step workers"
    assert summary["status"] == "Failed" and summary["error"] == "interrupted"
    assert summary["steps"][key]["phase"] == "Interrupted" and "interrupted" in summary["steps"][key]["error"]
    assert summary["steps"]["freeze-water"]["phase"] == "Succeeded"
    gone = psutil.wait_procs(workers, timeout=10)[1]
    assert not gone, f"workers left running: {gone}"
    assert not _dp_processes_in(run_dir), "no dp process left behind"
