"""The local engine's step workers: one worker process per step group, and one step launcher, for the
length of one run.

:class:`StepWorkers` starts ``python -m lamflow.ops.runtime.worker SOCKET`` for every group that has steps
left to run, and gives each grouped step the command that hands its script to that worker
(:mod:`lamflow.ops.runtime.worker_client`). Steps that run in a process of their own get the same command
pointed at the step launcher (``python -m lamflow.ops.runtime.launcher SOCKET``), which forks that process
from an interpreter that has dflow and the ops imported already.

A worker that dies — a step that segfaulted or was killed for memory — is reaped here: its exit status is
written where the waiting client reads it (so that step fails with the signal), and a fresh worker takes
over the socket for the group's remaining steps. Sockets live in a short temporary directory (Unix socket
paths are limited to about 100 bytes; run directories can be deeper).
"""

from __future__ import annotations

import shutil
import signal
import subprocess
import sys
import tempfile
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from lamflow.ops.runtime import worker_client

MAX_RESTARTS = 8  # per group: a worker that cannot start at all leaves its steps to run on their own
STOP_TIMEOUT_S = 5.0


LAUNCHER = "the step launcher"  # its name where a group's name would be


@dataclass
class _Worker:
    group: str
    socket: str
    proc: subprocess.Popen[bytes] | None = None
    restarts: int = 0

    @property
    def module(self) -> str:
        return "lamflow.ops.runtime.launcher" if self.group == LAUNCHER else "lamflow.ops.runtime.worker"


class StepWorkers:
    """Worker processes for a run's step groups, and the launcher of the steps in ``launched``; use as a
    context manager around the run."""

    def __init__(
        self, python: str, groups: Mapping[str, Sequence[str]], launched: Sequence[str] = ()
    ) -> None:
        self.python = python
        self.groups = {name: tuple(keys) for name, keys in groups.items() if keys}
        if launched:
            self.groups[LAUNCHER] = tuple(launched)
        self.workers: dict[str, _Worker] = {}
        self.stopping = threading.Event()
        self.lock = threading.Lock()
        self.socket_dir = ""

    def commands(self) -> dict[str, tuple[str, ...]]:
        """Step key -> the command its dflow template runs (the script path is appended by dflow)."""
        client = str(Path(worker_client.__file__).resolve())
        return {
            key: (self.python, "-I", "-S", client, worker.socket, self.python)
            for worker in self.workers.values()
            for key in self.groups[worker.group]
        }

    def __enter__(self) -> StepWorkers:
        self.socket_dir = tempfile.mkdtemp(prefix="lamflow-w-")
        for i, group in enumerate(self.groups):
            worker = _Worker(group, f"{self.socket_dir}/{i}.sock")
            self.workers[group] = worker
            self._start(worker)
        return self

    def __exit__(self, *exc: object) -> None:
        self.stopping.set()
        with self.lock:
            procs = [w.proc for w in self.workers.values() if w.proc is not None]
        for proc in procs:
            if proc.poll() is None:
                proc.terminate()
        for proc in procs:
            try:
                proc.wait(timeout=STOP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        shutil.rmtree(self.socket_dir, ignore_errors=True)

    def _start(self, worker: _Worker) -> None:
        Path(worker.socket).unlink(missing_ok=True)
        argv = [self.python, "-m", worker.module, worker.socket]
        # stdout/stderr: the engine's (its log file); a worker's own messages land there
        worker.proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL)
        threading.Thread(target=self._reap, args=(worker, worker.proc), daemon=True).start()

    def _reap(self, worker: _Worker, proc: subprocess.Popen[bytes]) -> None:
        status = proc.wait()
        if self.stopping.is_set():
            return
        Path(worker_client.death_note(worker.socket, proc.pid)).write_text(f"{status}\n")
        what = LAUNCHER if worker.group == LAUNCHER else f"the worker of step group {worker.group}"
        print(
            f"lamflow: {what} (pid {proc.pid}) ended with status {status}",
            file=sys.stderr,
            flush=True,
        )
        with self.lock:
            interrupted = status in (130, -signal.SIGINT, -signal.SIGTERM)  # the run is being stopped
            if self.stopping.is_set() or interrupted or worker.restarts >= MAX_RESTARTS:
                return
            worker.restarts += 1
            self._start(worker)
