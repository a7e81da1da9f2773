"""The local engine end to end through the installed CLI, with the fake dp (fast tier).

A whole demo run, a failing step, `logs`, `stop` of a running run, and engine selection.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time

import psutil
import pytest

from tests.conftest import EXAMPLES, LAMFLOW, minimal_spec, run_cli


@pytest.fixture(scope="module")
def demo_run(tmp_path_factory):
    from tests.conftest import FakeDp

    tmp = tmp_path_factory.mktemp("local")
    fake = FakeDp(tmp / "calls.jsonl")
    result = run_cli("submit", str(EXAMPLES / "demo.yaml"), "--run-dir", str(tmp / "run"), env=fake.env)
    return tmp / "run", result, fake


def test_demo_runs_every_step(demo_run):
    run_dir, result, fake = demo_run
    assert result.returncode == 0, result.stdout + result.stderr
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["status"] == "Succeeded" and summary["engine"] == "local"
    assert all(r["phase"] == "Succeeded" and r["duration_s"] is not None for r in summary["steps"].values())
    assert len(fake.calls()) == 10  # 2 train, 3 freeze, 2 change-bias, 3 test
    assert "✓ test-finetune-gete-on-gete-test" in result.stdout
    assert "[fake-dp]" not in result.stdout, "step output belongs in engine.log"
    assert not (run_dir / "engine.pid").exists()


def test_demo_outputs_models_metrics_and_plan(demo_run):
    run_dir, _, _ = demo_run
    summary = json.loads((run_dir / "summary.json").read_text())
    assert set(summary["models"]) == {"pretrain.water", "pretrain.molecules", "finetune.gete"}
    assert all((run_dir / p).resolve().is_file() for p in summary["models"].values())
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert [(m["model"], m["change_bias_on"]) for m in metrics] == [
        ("pretrain.water", "gete"),
        ("pretrain.molecules", "gete"),
        ("finetune.gete", None),
    ]
    assert all(m["metrics"]["frames"] == 12 and m["metrics"]["force_rmse"] > 0 for m in metrics)
    plan = json.loads((run_dir / "plan.json").read_text())
    assert [s["op"] for s in plan["steps"]][:4] == ["pretrain", "freeze", "freeze", "finetune"]
    pretrain = summary["steps"]["pretrain"]
    assert (run_dir / pretrain["outputs"]["checkpoint"]).name == "model.ckpt.pt"


def test_logs_of_the_run_and_of_a_step(demo_run):
    run_dir, _, _ = demo_run
    whole = run_cli("logs", str(run_dir))
    assert whole.returncode == 0 and "[fake-dp]" in whole.stdout
    step = run_cli("logs", str(run_dir), "--step", "freeze-water")
    assert step.returncode == 0 and "--head water" in step.stdout
    unknown = run_cli("logs", str(run_dir), "--step", "nope")
    assert unknown.returncode == 2 and "no step 'nope'" in unknown.stderr
    finished = run_cli("stop", str(run_dir))
    assert finished.returncode == 2 and "not running (status Succeeded)" in finished.stderr


def test_failing_step_fails_the_run(tmp_path, write_spec, fake_dp):
    spec = minimal_spec()
    out = run_cli(
        "submit",
        str(write_spec(spec)),
        "--run-dir",
        str(tmp_path / "r"),
        env={"LAMFLOW_FAKE_DP_FAIL": "train"},
    )
    assert out.returncode == 1
    summary = json.loads((tmp_path / "r" / "summary.json").read_text())
    assert summary["steps"]["pretrain"]["phase"] == "Failed"
    assert summary["error"].startswith("step pretrain failed: ")
    assert "train failed (LAMFLOW_FAKE_DP_FAIL)" in summary["error"]
    assert "✗ pretrain" in out.stdout and "train failed" in out.stdout
    assert summary["steps"]["test-finetune-gete-on-gete-test"]["phase"] == "Skipped"


def stop_while_running(
    args: list[str], env: dict[str, str], run_dir, key: str, wait_s: float, ignore_sigint: bool = False
) -> tuple[dict, list[psutil.Process]]:
    """`lamflow submit ARGS` in the background, `lamflow stop` once step ``key`` runs (waiting at most
    ``wait_s``); asserts the stop worked and the run exited 130. Returns the final summary and the run's
    launcher and what it forked (step workers, steps) as they were before the stop."""
    proc = subprocess.Popen(
        [str(LAMFLOW), "submit", *args, "--run-dir", str(run_dir)],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        # a background job of a non-interactive shell starts with SIGINT ignored
        preexec_fn=(lambda: signal.signal(signal.SIGINT, signal.SIG_IGN)) if ignore_sigint else None,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + wait_s
        while time.monotonic() < deadline:
            summary = run_dir / "summary.json"
            if summary.exists() and json.loads(summary.read_text())["steps"][key]["phase"] == "Running":
                break
            time.sleep(0.2)
        family = psutil.Process(proc.pid).children(recursive=True)
        # the launcher and what it forked: step workers (and steps) carry the launcher's command line
        workers = [p for p in family if "lamflow.ops.runtime.launcher" in p.cmdline()]
        stopped = run_cli("stop", str(run_dir))
        assert stopped.returncode == 0, stopped.stderr
        assert proc.wait(timeout=30) == 130
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGKILL)
    summary = json.loads((run_dir / "summary.json").read_text())
    summary["_terminal"] = proc.stdout.read() if proc.stdout else ""  # what the user saw
    return summary, workers


@pytest.mark.parametrize("ignore_sigint", [False, True], ids=["foreground", "started-with-sigint-ignored"])
def test_stop_interrupts_a_running_run(tmp_path, write_spec, fake_dp, ignore_sigint):
    run_dir = tmp_path / "r"
    env = {**os.environ, "LAMFLOW_FAKE_DP_SLEEP": "60"}
    spec = [str(write_spec(minimal_spec()))]
    summary, _ = stop_while_running(spec, env, run_dir, "pretrain", 30, ignore_sigint)
    assert summary["status"] == "Failed" and summary["error"] == "interrupted"
    assert summary["steps"]["pretrain"]["phase"] == "Interrupted"  # as the README promises
    assert not [k for k, s in summary["steps"].items() if s["phase"] == "Failed"], summary["steps"]
    assert {s["phase"] for s in summary["steps"].values()} <= {
        "Interrupted",
        "Skipped",
        "Cached",
        "Succeeded",
    }
    started = [line for line in summary["_terminal"].splitlines() if "▶" in line]
    assert [line.split("▶")[1].split()[0] for line in started] == ["pretrain"], summary["_terminal"]
    assert "step not started" not in summary["_terminal"]
    time.sleep(0.5)
    assert not _dp_processes_in(run_dir), "no dp process left behind"


def _dp_processes_in(run_dir):
    """Fake dp processes working inside ``run_dir`` (other tests' runs in parallel workers do not count)."""
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            cmdline = open(f"/proc/{entry}/cmdline").read()
            cwd = os.readlink(f"/proc/{entry}/cwd")
        except OSError:
            continue
        if "fake_dp.py" in cmdline and cwd.startswith(str(run_dir.resolve())):
            found.append(int(entry))
    return found


def test_unknown_engine_is_bad_input(tmp_path, write_spec):
    out = run_cli(
        "submit", str(write_spec(minimal_spec())), "--engine", "slurm", "--run-dir", str(tmp_path / "r")
    )
    assert out.returncode == 2 and "--engine slurm: unknown engine (available: local, argo)" in out.stderr
    assert not (tmp_path / "r").exists()


def test_checkpoints_are_linked_for_fine_tuning(demo_run):
    run_dir, _, _ = demo_run
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["checkpoints"] == {
        "pretrain": "models/pretrain.pt",
        "finetune.gete": "models/finetune-gete.pt",
    }
    assert (run_dir / "models/pretrain.pt").resolve().suffix == ".pt"
    assert (run_dir / "models/finetune-gete.pt").resolve().is_file()
    status = run_cli("status", str(run_dir))
    assert "Training checkpoints" in status.stdout and "models/finetune-gete.pt" in status.stdout


def test_status_into_a_closed_pipe_exits_cleanly(demo_run):
    run_dir, _, _ = demo_run
    out = subprocess.run(
        ["bash", "-c", f"set -o pipefail; {LAMFLOW} status {run_dir} | head -n 1"],
        capture_output=True,
        text=True,
    )
    assert out.returncode == 0 and out.stderr == "" and len(out.stdout.splitlines()) == 1
    # a reader gone before anything is written: rich tables and plain writes alike
    for command in (f"status {run_dir}", f"status {run_dir} --output json", f"logs {run_dir}", "schema"):
        gone = subprocess.run(
            ["bash", "-c", f"set -o pipefail; {LAMFLOW} {command} | true"], capture_output=True
        )
        assert (gone.returncode, gone.stderr) == (0, b""), command


def test_status_of_a_missing_run_names_the_paths_tried(tmp_path):
    out = run_cli("status", "runs/nope", cwd=tmp_path)
    assert out.returncode == 2
    assert (
        "runs/nope: no such run (no runs/nope/summary.json)" in out.stderr and "runs/runs" not in out.stderr
    )


def test_deepmd_warnings_reach_the_summary_and_the_terminal(tmp_path, write_spec, fake_dp):
    """Fine-tuning a Ge-only checkpoint on GeTe: DeePMD-kit warns that Te is randomly initialised."""
    from lamflow.workflows.compile.deepmd_input import architecture
    from lamflow.workflows.spec.model import ModelSpec
    from tests.conftest import DEMO_DATA
    from tests.fake_dp import save_checkpoint

    descriptor, fitting = architecture(ModelSpec(preset="dpa2-tiny"))
    params = {"type_map": ["Ge"], "descriptor": descriptor, "fitting_net": fitting}
    save_checkpoint(tmp_path / "ge-only.pt", params, 9, 1e-3)
    spec = {
        "name": "warn",
        "datasets": {
            "gete": {"path": str(DEMO_DATA / "gete/train")},
            "gete-test": {"path": str(DEMO_DATA / "gete/test")},
        },
        "model": {"preset": "dpa2-tiny"},
        "stages": {
            "finetune": [
                {
                    "name": "ext",
                    "from": {"model_file": "ge-only.pt"},
                    "datasets": ["gete"],
                    "training": {"steps": 4},
                }
            ],
            "test": [{"models": ["finetune.ext"], "datasets": ["gete-test"]}],
        },
    }
    out = run_cli("submit", str(write_spec(spec)), "--run-dir", str(tmp_path / "r"))
    assert out.returncode == 0, out.stderr
    warning = "types not in the pretrained model are randomly initialised: ['Te']"
    summary = json.loads((tmp_path / "r" / "summary.json").read_text())
    assert summary["steps"]["finetune-ext"]["warnings"] == [warning]
    assert summary["steps"]["test-finetune-ext-on-gete-test"]["warnings"] == []
    assert f"⚠ {warning}" in out.stdout
    assert f"finetune-ext: {warning}" in run_cli("status", str(tmp_path / "r")).stdout
    again = run_cli("submit", str(write_spec(spec)), "--run-dir", str(tmp_path / "r2"))  # from the cache
    assert again.returncode == 0, again.stderr
    summary = json.loads((tmp_path / "r2" / "summary.json").read_text())
    assert summary["steps"]["finetune-ext"]["phase"] == "Cached"
    assert summary["steps"]["finetune-ext"]["warnings"] == [warning]
    assert f"finetune-ext: {warning}" in again.stdout


def test_the_first_step_to_fail_is_the_runs_error_and_steps_ended_by_the_engine_are_skipped():
    """dflow fails fast: when one step fails, the engine ends the steps still running (they print dflow's
    "Got SIGTERM"). Whichever of them sits first in the plan, the run's error names the step that failed
    first, and the ended ones are Skipped, not failed."""
    from lamflow.workflows.engines.local import ENDED_BY_ENGINE, _settle_failed
    from lamflow.workflows.engines.summary import RunSummary, StepRecord

    def record(key: str, finished: str, error: str) -> StepRecord:
        return StepRecord(key=key, op="label", summary="", phase="Failed", finished_at=finished, error=error)

    steps = {
        "label-1": record("label-1", "2026-12-03T10:00:02.100+00:00", ENDED_BY_ENGINE),
        "label-2": record("label-2", "2026-12-03T10:00:01.900+00:00", "none of 1 frames labelled"),
        "label-3": record("label-3", "2026-12-03T10:00:02.500+00:00", "SCF failed"),
    }
    summary = RunSummary(run_id="r", spec="s", spec_sha256="x", engine="local", steps=steps)
    failed = _settle_failed(summary)
    assert [r.key for r in failed] == ["label-2", "label-3"]  # a failure of its own stays a failure
    assert (steps["label-1"].phase, steps["label-1"].error) == ("Skipped", "stopped: another step failed")
    # a step that failed first keeps its error, even when it is dflow's SIGTERM message
    steps["label-1"].phase, steps["label-1"].error = "Failed", ENDED_BY_ENGINE
    steps["label-1"].finished_at = "2026-12-03T10:00:01.000+00:00"
    assert [r.key for r in _settle_failed(summary)][0] == "label-1"
