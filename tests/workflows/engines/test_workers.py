"""The local engine's step processes across passes: one step launcher for the whole run, a worker per step
group for each pass, and nothing left behind by a pass, by the run or by Ctrl-C (with the fake dp: a worker
imports DeePMD-kit when a real one is there)."""

from __future__ import annotations

import os
import subprocess
import sys
import time

import pytest

from lamflow.workflows.engines.workers import LAUNCHER, StepWorkers


def _pids(command: tuple[str, ...], script) -> tuple[int, int]:
    """(pid, parent pid) of the process that ran ``script`` through a step's command."""
    done = subprocess.run([*command, str(script)], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stdout + done.stderr
    pid, parent = done.stdout.split()
    return int(pid), int(parent)


def _gone(pid: int, within_s: float = 10.0) -> bool:
    deadline = time.monotonic() + within_s
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return True
        time.sleep(0.05)
    return False


def test_one_launcher_serves_every_pass_and_each_pass_has_workers_of_its_own(tmp_path, fake_dp):
    script = tmp_path / "step.py"
    script.write_text("import os\nprint(os.getpid(), os.getppid())\n")
    passes = []
    with StepWorkers(sys.executable) as workers:
        for _ in range(2):
            with workers.serving({"tests": ["test-a"]}, launched=["train"]) as serving:
                commands = serving.commands()
                assert set(commands) == {"test-a", "train"}
                launcher = workers.workers[LAUNCHER].proc
                assert launcher is not None
                passes.append(
                    (launcher.pid, _pids(commands["test-a"], script), _pids(commands["train"], script))
                )
            grouped_worker = passes[-1][1][0]
            assert _gone(grouped_worker), "a pass's worker ends with the pass"
        with workers.serving({}) as serving:  # a pass with nothing for the launcher or a worker
            assert serving.commands() == {}
        assert launcher.poll() is None, "the launcher stays between passes"
    assert launcher.poll() is not None and not os.path.exists(workers.socket_dir), "and ends with the run"
    (first_launcher, first_grouped, first_alone), (second_launcher, second_grouped, second_alone) = passes
    assert first_launcher == second_launcher
    assert first_grouped[1] == second_grouped[1] == first_launcher, "workers are forked by the launcher"
    assert first_grouped[0] != second_grouped[0], "a new worker for the second pass"
    assert first_alone[1] == second_alone[1] == first_launcher, "steps of their own too"


def test_an_interrupted_pass_ends_the_launcher_and_everything_it_forked(tmp_path, fake_dp):
    script = tmp_path / "step.py"
    script.write_text("import os\nprint(os.getpid(), os.getppid())\n")
    with StepWorkers(sys.executable) as workers:
        with pytest.raises(KeyboardInterrupt), workers.serving({"tests": ["test-a"]}) as serving:
            worker_pid, _ = _pids(serving.commands()["test-a"], script)
            raise KeyboardInterrupt
        launcher = workers.workers[LAUNCHER].proc
        assert launcher is not None and launcher.poll() is not None
        assert _gone(worker_pid)
