"""The step launcher forks a process of its own for every step: the step sees what ``python SCRIPT``
started by its client would see (pid, directory, environment, argv, sys.path[0], signal dispositions,
fresh random draws), its output reaches the client's stdout, and its exit status or the signal that
killed it becomes the client's. Steps run side by side; a client that goes away takes its step with it."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

import pytest

from lamflow.ops.runtime import worker_client

CLIENT = str(Path(worker_client.__file__).resolve())

PROBE = textwrap.dedent(
    """
    import json, os, random, signal, sys
    import numpy as np
    print("STATE " + json.dumps({
        "pid": os.getpid(), "ppid": os.getppid(), "cwd": os.getcwd(), "env": os.environ.get("PROBE_ENV"),
        "argv": sys.argv, "path0": sys.path[0], "np": np.random.random(), "random": random.random(),
        "sigint": {signal.default_int_handler: "python", signal.SIG_IGN: "ignored"}.get(
            signal.getsignal(signal.SIGINT), "other"),
        "sigterm": "default" if signal.getsignal(signal.SIGTERM) == signal.SIG_DFL else "other",
        "dflow_loaded": "dflow.python" in sys.modules,
    }), flush=True)
    """
)


@pytest.fixture
def launcher():
    sock = os.path.join(tempfile.mkdtemp(prefix="lamflow-lt-"), "l.sock")
    proc = subprocess.Popen([sys.executable, "-m", "lamflow.ops.runtime.launcher", sock])
    yield sock, proc
    if proc.poll() is None:
        proc.terminate()
        proc.wait(timeout=10)


def client_argv(sock: str, script: Path) -> list[str]:
    return [sys.executable, "-I", "-S", CLIENT, sock, sys.executable, str(script)]


def run_step(sock: str, cwd: Path, body: str, env: dict[str, str] | None = None, **kw):
    script = cwd / f"step-{time.monotonic_ns()}.py"
    script.write_text(body)
    return subprocess.run(
        client_argv(sock, script), cwd=cwd, capture_output=True, text=True, timeout=60,
        env={**os.environ, **(env or {})}, **kw,
    )  # fmt: skip


def state_of(out: subprocess.CompletedProcess[str]) -> dict:
    assert out.returncode == 0, out.stdout + out.stderr
    line = next(x for x in out.stdout.splitlines() if x.startswith("STATE "))
    return json.loads(line[len("STATE ") :])


def test_each_step_is_a_process_of_its_own_as_python_script_would_start_it(launcher, tmp_path):
    sock, proc = launcher
    first = state_of(run_step(sock, tmp_path, PROBE, env={"PROBE_ENV": "one"}))
    second = state_of(run_step(sock, tmp_path, PROBE, env={"PROBE_ENV": "two"}))
    assert first["ppid"] == second["ppid"] == proc.pid  # forked by the launcher ...
    assert len({first["pid"], second["pid"], proc.pid}) == 3  # ... a process each
    assert first["dflow_loaded"]  # what the launcher imported once
    assert (first["env"], second["env"]) == ("one", "two") and first["cwd"] == str(tmp_path)
    assert first["argv"] == [first["argv"][0]] and first["argv"][0].endswith(".py")
    assert first["path0"] == str(tmp_path)
    assert first["np"] != second["np"] and first["random"] != second["random"]  # fresh seeds
    assert (first["sigint"], first["sigterm"]) == ("python", "default")


def test_exit_status_output_and_exceptions_reach_the_client(launcher, tmp_path):
    sock, _ = launcher
    done = run_step(sock, tmp_path, "print('to stdout'); import sys; print('to stderr', file=sys.stderr)")
    assert done.returncode == 0 and "to stdout" in done.stdout and "to stderr" in done.stdout
    assert run_step(sock, tmp_path, "import sys; sys.exit(3)").returncode == 3
    said = run_step(sock, tmp_path, "import sys; sys.exit('no good')")
    assert said.returncode == 1 and "no good" in said.stdout
    raised = run_step(sock, tmp_path, "raise ValueError('bad step')")
    assert raised.returncode == 1 and "ValueError: bad step" in raised.stdout and "Traceback" in raised.stdout
    killed = run_step(sock, tmp_path, "import os, signal; os.kill(os.getpid(), signal.SIGKILL)")
    assert killed.returncode == -signal.SIGKILL


def test_ctrl_c_reaches_the_step_and_a_background_client_passes_on_ignoring_it(launcher, tmp_path):
    sock, _ = launcher
    script = tmp_path / "wait.py"
    script.write_text("import os, time\nprint('PID', os.getpid(), flush=True)\ntime.sleep(60)\n")
    client = subprocess.Popen(client_argv(sock, script), cwd=tmp_path, stdout=subprocess.PIPE, text=True)
    assert client.stdout is not None
    step_pid = int(client.stdout.readline().split()[1])
    client.send_signal(signal.SIGINT)  # the client alone: it waits for its step
    time.sleep(0.3)
    assert client.poll() is None
    os.kill(step_pid, signal.SIGINT)  # as Ctrl-C or `lamflow stop` reach every step process
    assert client.wait(timeout=20) == -signal.SIGINT  # KeyboardInterrupt ends Python with SIGINT
    assert "KeyboardInterrupt" in client.stdout.read()

    ignoring = state_of(
        run_step(sock, tmp_path, PROBE, preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_IGN))
    )
    assert ignoring["sigint"] == "ignored"


def test_a_client_that_goes_away_ends_its_step_and_sigterm_ends_the_launcher_and_its_steps(
    launcher, tmp_path
):
    sock, proc = launcher
    script = tmp_path / "wait.py"
    script.write_text("import os, time\nprint('PID', os.getpid(), flush=True)\ntime.sleep(60)\n")

    def start() -> tuple[subprocess.Popen[str], int]:
        client = subprocess.Popen(client_argv(sock, script), cwd=tmp_path, stdout=subprocess.PIPE, text=True)
        assert client.stdout is not None
        return client, int(client.stdout.readline().split()[1])

    client, step_pid = start()
    other, other_pid = start()  # two steps at once
    client.kill()
    client.wait()
    assert _ends(step_pid)
    assert _alive(other_pid)
    other.send_signal(signal.SIGTERM)  # sent to the client alone: passed on to its step
    assert other.wait(timeout=20) == -signal.SIGTERM and _ends(other_pid)

    third, third_pid = start()
    proc.terminate()
    assert proc.wait(timeout=20) == 0 and _ends(third_pid)
    assert third.wait(timeout=20) == -signal.SIGTERM


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return not Path(f"/proc/{pid}/stat").read_text().split(") ")[1].startswith("Z")


def _ends(pid: int, within_s: float = 20.0) -> bool:
    deadline = time.monotonic() + within_s
    while time.monotonic() < deadline:
        if not _alive(pid):
            return True
        time.sleep(0.05)
    return False


def _ask_for_worker(sock: str, worker_sock: str, cwd: Path) -> tuple[socket.socket, int]:
    """What the engine's StepWorkers sends: a worker for group ``g`` on ``worker_sock``; returns the open
    connection (the worker's exit status comes back on it) and the worker's pid."""
    conn = worker_client.connect(sock)
    assert conn is not None
    context = worker_client.here()
    request = {**context, "worker": "g", "socket": worker_sock, "cwd": str(cwd),
               "env": {**context["env"], "LAMFLOW_DP": "fake"}}  # fmt: skip
    worker_client.send_request(conn, request, [1, 2])
    return conn, json.loads(conn.makefile("r").readline())["pid"]


def test_a_worker_forked_by_the_launcher_serves_steps_and_its_end_is_reported_and_it_dies_with_the_launcher(
    launcher, tmp_path
):
    sock, proc = launcher
    worker_sock = os.path.join(os.path.dirname(sock), "w.sock")
    conn, worker_pid = _ask_for_worker(sock, worker_sock, tmp_path)
    first = state_of(run_step(worker_sock, tmp_path, PROBE, env={"PROBE_ENV": "one"}))
    second = state_of(run_step(worker_sock, tmp_path, PROBE, env={"PROBE_ENV": "two"}))
    assert first["pid"] == second["pid"] == worker_pid and first["ppid"] == proc.pid  # one process, forked
    assert first["dflow_loaded"] and (first["env"], second["env"]) == ("one", "two")
    os.kill(worker_pid, signal.SIGKILL)
    assert json.loads(conn.makefile("r").readline()) == {"exit": -signal.SIGKILL}  # what the engine reports
    conn.close()

    _, again = _ask_for_worker(sock, worker_sock + "2", tmp_path)
    proc.kill()  # no SIGTERM to end its children: the kernel ends the worker with the launcher
    assert _ends(again)


def test_the_ops_preload_exists_and_imports_no_torch_into_the_launcher():
    """What the launcher imports before it forks: every op's ``preload`` (a module that imported torch
    there would fork torch's thread pools into every step; dpdata's DeePMD-kit driver plugin is light, and
    DeePMD-kit's model deviation is NumPy only), with the GPUs left visible (only torch needs them hidden)."""
    import importlib
    import pkgutil

    import lamflow.ops
    from lamflow.ops.runtime.contract import LamflowOP

    for module in pkgutil.iter_modules(lamflow.ops.__path__):
        if not module.ispkg:
            importlib.import_module(f"lamflow.ops.{module.name}")
    preload = sorted({name for op in LamflowOP.__subclasses__() for name in op.preload})
    assert {"ase.io", "dpdata", "deepmd.infer.model_devi"} <= set(preload)
    code = (
        "import os, sys; from lamflow.ops.runtime.launcher import warm_up; warm_up(sys.argv[1:]); "
        "print(sorted(m for m in sys.modules if m.split('.')[0] == 'torch'), 'deepmd.infer.model_devi' in "
        "sys.modules, os.environ.get('CUDA_VISIBLE_DEVICES'))"
    )
    env = {k: v for k, v in os.environ.items() if k != "CUDA_VISIBLE_DEVICES"}
    out = subprocess.run(
        [sys.executable, "-c", code, *preload], capture_output=True, text=True, timeout=120, env=env
    )
    assert out.returncode == 0 and out.stdout.strip() == "[] True None", out.stdout + out.stderr


def test_deepmd_is_imported_before_forks_only_on_a_machine_without_gpus_and_with_the_real_dp(monkeypatch):
    """The engine asks the launcher for DeePMD-kit's modules (``--preload``) only where forking after that
    import is safe (no GPU: CUDA is not fork-safe) and useful (the real ``dp``, not a fake); the launcher
    hides every GPU from itself and sets the thread variables DeePMD-kit reads when imported."""
    from lamflow.ops.dp import DEEPMD_MODULES
    from lamflow.ops.runtime import launcher
    from lamflow.ops.runtime.slots import Machine
    from lamflow.workflows.compile.plan import Plan
    from lamflow.workflows.engines.local import _preload

    plan = Plan(name="p", steps=(), dataset_paths={})
    cpu, gpu = Machine(gpus=(), cores=(0, 1)), Machine(gpus=("0",), cores=(0, 1))
    monkeypatch.delenv("LAMFLOW_DP", raising=False)
    assert _preload(plan, cpu) == list(DEEPMD_MODULES)
    assert _preload(plan, gpu) == []
    monkeypatch.setenv("LAMFLOW_DP", "fake-dp")
    assert _preload(plan, cpu) == []
    for name in ("CUDA_VISIBLE_DEVICES", "OMP_NUM_THREADS", "DP_INTER_OP_PARALLELISM_THREADS"):
        monkeypatch.setenv(name, "7")  # put back after the test
    launcher._prepare_for_deepmd()
    assert os.environ["CUDA_VISIBLE_DEVICES"] == "" and os.environ["DP_INTER_OP_PARALLELISM_THREADS"] == "1"
    assert os.environ["OMP_NUM_THREADS"] == "1"


def test_a_launcher_asked_for_deepmd_without_it_installed_still_serves(monkeypatch):
    """DeePMD-kit is optional (``lamflow[deepmd]``): with its modules missing, the warm-up goes on."""
    from lamflow.ops.runtime import launcher

    for name in ("CUDA_VISIBLE_DEVICES", "OMP_NUM_THREADS", "DP_INTER_OP_PARALLELISM_THREADS"):
        monkeypatch.setenv(name, "7")  # put back after the test
    missing = "deepmd.pt.entrypoints.main"  # one of DEEPMD_MODULES: torch comes with it
    monkeypatch.setitem(sys.modules, missing, None)  # import raises ImportError
    launcher.warm_up(["json", missing])
    assert os.environ["CUDA_VISIBLE_DEVICES"] == ""
