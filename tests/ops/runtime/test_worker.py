"""The step worker runs dflow step scripts one after another in one process, each as if it had a process
of its own: its own output, exit status, directory and environment, and no state left by the one before."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tempfile
import textwrap
from pathlib import Path

import pytest

from lamflow.ops import dp
from lamflow.ops.runtime import worker_client
from tests.conftest import FAKE_DP

CLIENT = str(Path(worker_client.__file__).resolve())

PROBE = textwrap.dedent(
    """
    import json, logging, os, random, signal, sys, warnings
    import dflow
    import numpy as np
    state = {
        "pid": os.getpid(), "cwd": os.getcwd(), "leak": os.environ.get("LEAK"), "argv": sys.argv[1:],
        "path0": sys.path[0], "deepmd_handlers": len(logging.getLogger("deepmd").handlers),
        "root_level": logging.getLogger().level, "filters": len(warnings.filters),
        "sigterm": str(signal.getsignal(signal.SIGTERM)), "dflow_mode": dflow.config["mode"],
        "np": np.random.random(), "random": random.random(),
    }
    if "torch" in sys.modules:
        import torch
        state.update(threads=torch.get_num_threads(), dtype=str(torch.get_default_dtype()),
                     grad=torch.is_grad_enabled(), draw=torch.rand(1).item())
    print("STATE " + json.dumps(state, sort_keys=True))
    """
)

MUTATE = textwrap.dedent(
    """
    import logging, os, random, signal, sys, warnings
    import dflow
    import numpy as np
    os.environ["LEAK"] = "1"; os.chdir("/"); sys.argv.append("leak"); sys.path.insert(0, "/leak")
    logging.getLogger("deepmd").addHandler(logging.StreamHandler())
    logging.getLogger().setLevel(logging.DEBUG)
    warnings.simplefilter("error")
    signal.signal(signal.SIGTERM, lambda *a: None)
    dflow.config["mode"] = "leak"
    np.random.random(); random.random()
    if "torch" in sys.modules:
        import torch
        torch.set_num_threads(1); torch.set_default_dtype(torch.float64); torch.set_grad_enabled(False)
        torch.rand(3)
    print("mutated")
    """
)


def start_worker(env: dict[str, str]) -> tuple[str, subprocess.Popen[bytes]]:
    sock = os.path.join(tempfile.mkdtemp(prefix="lamflow-wt-"), "w.sock")
    proc = subprocess.Popen([sys.executable, "-m", "lamflow.ops.runtime.worker", sock], env=env)
    return sock, proc


@pytest.fixture
def worker():
    sock, proc = start_worker({**os.environ, "LAMFLOW_DP": f"{sys.executable} {FAKE_DP}"})
    yield sock
    proc.terminate()
    proc.wait(timeout=10)


def run_step(sock: str, tmp_path: Path, body: str, name: str = "script") -> subprocess.CompletedProcess[str]:
    script = tmp_path / name
    script.write_text(body)
    return subprocess.run(
        [sys.executable, "-I", "-S", CLIENT, sock, sys.executable, str(script)],
        cwd=tmp_path, capture_output=True, text=True, timeout=120,
    )  # fmt: skip


def state_of(out: subprocess.CompletedProcess[str]) -> dict:
    assert out.returncode == 0, out.stdout + out.stderr
    line = next(x for x in out.stdout.splitlines() if x.startswith("STATE "))
    return json.loads(line[len("STATE ") :])


def test_steps_share_one_process_with_their_own_output_and_exit_status(worker, tmp_path):
    ok = run_step(worker, tmp_path, "import os; print('pid', os.getpid()); print('cwd', os.getcwd())")
    assert ok.returncode == 0 and f"cwd {tmp_path}" in ok.stdout
    pid = ok.stdout.split()[1]
    code = run_step(worker, tmp_path, "import os, sys; print('pid', os.getpid()); sys.exit(3)")
    assert code.returncode == 3 and code.stdout.split()[1] == pid
    raised = run_step(worker, tmp_path, "raise ValueError('bad step')")
    assert raised.returncode == 1 and "ValueError: bad step" in raised.stdout
    assert "Traceback" in raised.stdout
    text = run_step(worker, tmp_path, "import sys; sys.exit('no input')")
    assert text.returncode == 1 and "no input" in text.stdout
    again = run_step(worker, tmp_path, "import os; print('pid', os.getpid())")
    assert again.returncode == 0 and again.stdout.split()[1] == pid


def test_a_step_leaves_no_state_for_the_next(worker, tmp_path):
    before = state_of(run_step(worker, tmp_path, PROBE))
    assert run_step(worker, tmp_path, MUTATE).returncode == 0
    after = state_of(run_step(worker, tmp_path, PROBE))
    assert after == before  # random draws included: each step starts from the same random state


@pytest.mark.slow
def test_isolation_with_deepmd_and_torch_loaded(tmp_path):
    """The real worker imports DeePMD-kit (and torch) first; torch's settings and RNG are put back too."""
    sock, proc = start_worker({k: v for k, v in os.environ.items() if k != "LAMFLOW_DP"})
    try:
        before = state_of(run_step(sock, tmp_path, PROBE))
        assert "threads" in before and before["dtype"] == "torch.float32"
        assert run_step(sock, tmp_path, MUTATE).returncode == 0
        assert state_of(run_step(sock, tmp_path, PROBE)) == before
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def test_run_dp_in_process_writes_the_same_log_and_errors(tmp_path, monkeypatch):
    monkeypatch.setenv("LAMFLOW_DP", f"{sys.executable} {FAKE_DP}")
    monkeypatch.setattr(dp, "IN_WORKER", True)
    argv = dp.test_command("missing.pth", "systems")
    assert dp.in_process_entry(argv) is not None
    pid_before = os.getpid()
    with pytest.raises(dp.DpError) as failed:
        dp.run_dp(argv, cwd=tmp_path, log_file="test.log", echo=False)
    assert failed.value.returncode == 1 and "missing.pth" in failed.value.tail
    log = (tmp_path / "test.log").read_text()
    assert log.startswith(f"$ {' '.join(argv)}\n") and "missing.pth" in log
    assert os.getpid() == pid_before and Path.cwd() != tmp_path
    monkeypatch.setenv("LAMFLOW_DP", "/bin/false")
    assert dp.in_process_entry(["/bin/false", "--pt", "test"]) is None  # not Python: a process of its own
    monkeypatch.setattr(dp, "IN_WORKER", False)
    monkeypatch.setenv("LAMFLOW_DP", f"{sys.executable} {FAKE_DP}")
    assert dp.in_process_entry(argv) is None


def test_a_step_forked_from_a_launcher_with_deepmd_runs_the_real_dp_in_process_and_a_fake_apart(monkeypatch):
    """The step launcher imports DeePMD-kit only on machines without GPUs; the steps it forks then run the
    real ``dp`` in-process. A fake ``dp`` (``LAMFLOW_DP``) keeps a process of its own there."""
    monkeypatch.setattr(dp, "IN_WORKER", False)
    monkeypatch.setattr(dp, "FORKED_STEP", True)
    monkeypatch.delenv("LAMFLOW_DP", raising=False)
    argv = dp.freeze_command("model.pth")
    monkeypatch.delitem(sys.modules, "deepmd.main", raising=False)
    assert dp.in_process_entry(argv) is None, "DeePMD-kit not imported by the launcher: a process"
    monkeypatch.setitem(sys.modules, "deepmd.main", sys.modules["os"])  # stands for the imported module
    assert dp.in_process_entry(argv) is not None
    monkeypatch.setenv("LAMFLOW_DP", f"{sys.executable} {FAKE_DP}")
    assert dp.in_process_entry(dp.freeze_command("model.pth")) is None
    monkeypatch.setattr(dp, "FORKED_STEP", False)
    monkeypatch.delenv("LAMFLOW_DP")
    assert dp.in_process_entry(argv) is None, "outside a forked step or worker: a process"


def test_client_without_a_worker_runs_the_step_itself(tmp_path):
    sock_dir = tempfile.mkdtemp(prefix="lamflow-wt-")
    script = tmp_path / "script"
    script.write_text("import os; print('alone', os.getpid())")
    quick = (
        "import sys; from lamflow.ops.runtime import worker_client as w; w.CONNECT_TIMEOUT_S = 0.2; "
        "sys.exit(w.main(sys.argv))"
    )
    out = subprocess.run(
        [sys.executable, "-c", quick, f"{sock_dir}/none.sock", sys.executable, str(script)],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert (
        out.returncode == 0 and "running the step in its own process" in out.stdout and "alone" in out.stdout
    )
    os.rmdir(sock_dir)
    gone = run_step(f"{sock_dir}/none.sock", tmp_path, "print('never')")
    assert gone.returncode == 1 and "the run has ended" in gone.stdout and "never" not in gone.stdout


def test_a_dp_command_in_a_fork_of_the_step_logs_and_exits_as_the_program_would(tmp_path, capfd):
    """How a step forked from a launcher with DeePMD-kit imported runs each ``dp`` command: in a child of
    its own (its own state and pid), output appended to the log and echoed, exit status or signal kept."""
    log = tmp_path / "dp.log"
    log.write_text("$ dp --pt freeze\n")

    def ok() -> None:
        print("child pid", os.getpid())
        print("to stderr", file=sys.stderr)
        raise SystemExit(0)

    tail: list[str] = []
    assert dp._run_forked(ok, tmp_path, log, True, tail) == 0
    text = log.read_text()
    assert text.startswith("$ dp --pt freeze\nchild pid ") and "to stderr" in text
    assert int(text.split("child pid ")[1].split()[0]) != os.getpid()
    assert "child pid" in capfd.readouterr().out and any("to stderr" in line for line in tail)

    def fails() -> None:
        sys.exit("no checkpoint in .")

    assert dp._run_forked(fails, tmp_path, log, False, []) == 1 and log.read_text().endswith(
        "no checkpoint in .\n"
    )

    def interrupted() -> None:
        raise KeyboardInterrupt

    assert dp._run_forked(interrupted, tmp_path, log, False, []) == -signal.SIGINT
    assert dp._run_forked(lambda: os.kill(os.getpid(), signal.SIGKILL), tmp_path, log, False, []) == -9
