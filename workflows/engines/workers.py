"""The local engine's step workers: one step launcher for the length of a run, and one worker process per
step group for the length of each of the run's passes (one pass, or one per loop iteration).

:class:`StepWorkers` starts the step launcher (``python -m lamflow.ops.runtime.launcher SOCKET``), which
imports dflow and the ops once and forks from there every process the run's steps need:

- **a worker for every group** that has steps left to run: the engine asks the launcher for a worker on
  the group's socket, over a connection that stays open for the worker's life and brings back its exit
  status (:mod:`lamflow.ops.runtime.launcher`); a step that connects before its worker is up retries;
- **a process for every step that runs on its own** (training, MD, exploration), asked for by the step's
  command itself (:mod:`lamflow.ops.runtime.worker_client`).

Each grouped step gets the command that hands its script to its group's worker; the other steps, the same
command pointed at the launcher. A pass's workers end with it (the engine closes their connections, and
the launcher ends a child whose client went away); the launcher stays for the next pass, so that a run of
several loop iterations imports dflow, the ops and, where it preloads it, DeePMD-kit once.

A worker that dies — a step that segfaulted or was killed for memory — is reported here: its exit status
is written where the waiting client reads it (so that step fails with the signal), and a fresh worker binds
the group's socket for its remaining steps. A launcher that dies is started again, and the workers it
took with it (they die with it) are asked for again. Sockets live in a short temporary directory (Unix
socket paths are limited to about 100 bytes; run directories can be deeper).
"""

from __future__ import annotations

import json
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from lamflow.ops.runtime import worker_client

MAX_RESTARTS = 8  # per group: a worker that cannot start at all leaves its steps to run on their own
STOP_TIMEOUT_S = 5.0
KILLED_WITH_LAUNCHER = -signal.SIGKILL  # a worker's status when the launcher died under it


Connection = socket.socket  # (a _Worker's field is called socket)

LAUNCHER = "the step launcher"  # its name where a group's name would be


@dataclass
class _Worker:
    group: str
    socket: str
    proc: subprocess.Popen[bytes] | None = None  # the launcher's process
    restarts: int = 0
    conn: Connection | None = None  # a worker's connection to the launcher, while it lives
    retired: bool = False  # its pass ended: not started again


class StepWorkers:
    """The step launcher and the workers of a run's step groups; use as a context manager around the
    run, and :meth:`serving` around each of its passes."""

    def __init__(self, python: str) -> None:
        self.python = python
        self.preload: tuple[str, ...] = ()
        self.groups: dict[str, tuple[str, ...]] = {}
        self.workers: dict[str, _Worker] = {}  # the launcher's, and this pass's groups'
        self.stopping = threading.Event()
        self.lock = threading.Lock()
        self.socket_dir = ""
        self.passes = 0

    def commands(self) -> dict[str, tuple[str, ...]]:
        """Step key -> the command its dflow template runs (the script path is appended by dflow)."""
        client = str(Path(worker_client.__file__).resolve())
        return {
            key: (self.python, "-I", "-S", client, worker.socket, self.python)
            for worker in self.workers.values()
            for key in self.groups.get(worker.group, ())  # a launcher kept from a pass before: maybe none
        }

    def __enter__(self) -> StepWorkers:
        self.socket_dir = tempfile.mkdtemp(prefix="lamflow-w-")
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @contextmanager
    def serving(
        self,
        groups: Mapping[str, Sequence[str]],
        launched: Sequence[str] = (),
        preload: Sequence[str] = (),
    ) -> Iterator[StepWorkers]:
        """One pass: a worker for each of ``groups`` (group -> its steps), the launcher for the steps in
        ``launched`` (the steps that run in a process of their own, forked by it). The launcher starts the
        first time a pass needs it, importing ``preload`` (the run's ops' ``preload``) before it forks
        anything, and stays for the passes after; this pass's workers end with it. An exception (Ctrl-C)
        ends the launcher and everything it forked."""
        self.passes += 1
        self.groups = {name: tuple(keys) for name, keys in groups.items() if keys}
        if launched or self.groups:
            self.groups[LAUNCHER] = tuple(launched)
            if LAUNCHER not in self.workers:
                self.preload = tuple(preload)
                launcher = _Worker(LAUNCHER, f"{self.socket_dir}/launcher.sock")
                self.workers[LAUNCHER] = launcher
                self._start_launcher(launcher)
        for i, group in enumerate(g for g in self.groups if g != LAUNCHER):
            worker = _Worker(group, f"{self.socket_dir}/{self.passes}-{i}.sock")
            self.workers[group] = worker
            threading.Thread(target=self._keep_worker, args=(worker,), daemon=True).start()
        try:
            yield self
        except BaseException:
            self.close()
            raise
        self._retire()

    def _retire(self) -> None:
        """End this pass's workers (their steps are done): close each one's connection to the launcher."""
        with self.lock:
            retiring = [w for name, w in self.workers.items() if name != LAUNCHER]
            for worker in retiring:
                del self.workers[worker.group]
                worker.retired = True
                if worker.conn is not None:
                    try:
                        worker.conn.shutdown(socket.SHUT_RDWR)
                    except OSError:
                        pass
        for worker in retiring:
            Path(worker.socket).unlink(missing_ok=True)

    def close(self) -> None:
        """End the launcher, and with it every process it forked."""
        self.stopping.set()
        with self.lock:
            proc = self.workers[LAUNCHER].proc if LAUNCHER in self.workers else None
        if proc is not None:  # it ends its children (the steps it forked, the workers) on SIGTERM
            if proc.poll() is None:
                proc.terminate()
            try:
                proc.wait(timeout=STOP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        if self.socket_dir:
            shutil.rmtree(self.socket_dir, ignore_errors=True)

    # the launcher: a program of its own, restarted when it dies

    def _start_launcher(self, launcher: _Worker) -> None:
        Path(launcher.socket).unlink(missing_ok=True)
        argv = [self.python, "-m", "lamflow.ops.runtime.launcher", launcher.socket]
        argv += [arg for name in self.preload for arg in ("--preload", name)]
        # stdout/stderr: the engine's (its log file); the launcher's own messages land there
        with self.lock:
            launcher.proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL)
        threading.Thread(target=self._reap_launcher, args=(launcher, launcher.proc), daemon=True).start()

    def _reap_launcher(self, launcher: _Worker, proc: subprocess.Popen[bytes]) -> None:
        status = proc.wait()
        if self.stopping.is_set():
            return
        Path(worker_client.death_note(launcher.socket, proc.pid)).write_text(f"{status}\n")
        _report(LAUNCHER, proc.pid, status)
        with self.lock:
            if _interrupted(status) or launcher.restarts >= MAX_RESTARTS:
                launcher.proc = None
                return
            launcher.restarts += 1
        self._start_launcher(launcher)

    # the workers: each asked of the launcher, and asked again when it dies

    def _keep_worker(self, worker: _Worker) -> None:
        """A group's worker for the length of its pass: started, reported when it dies, started again."""
        launcher = self.workers[LAUNCHER]
        while not self.stopping.is_set() and not worker.retired:
            status, pid = self._one_worker(worker, launcher)
            if self.stopping.is_set() or worker.retired:
                return
            if pid:
                Path(worker_client.death_note(worker.socket, pid)).write_text(f"{status}\n")
                _report(f"the worker of step group {worker.group}", pid, status)
            with self.lock:
                if _interrupted(status) or worker.restarts >= MAX_RESTARTS or launcher.proc is None:
                    return  # the group's steps find no worker and run in processes of their own
                worker.restarts += 1

    def _one_worker(self, worker: _Worker, launcher: _Worker) -> tuple[int, int]:
        """Ask the launcher for a worker on the group's socket; wait for it to end. Returns its exit status
        and pid (pid 0: the launcher never started it)."""
        try:  # retries while a launcher that died is started again
            conn = worker_client.connect(launcher.socket)
        except worker_client.RunEnded:
            return 0, 0
        if conn is None:
            return 1, 0
        Path(worker.socket).unlink(missing_ok=True)  # a dead worker's: its clients must not connect there
        pid = 0
        with conn:
            with self.lock:
                if worker.retired:
                    return 0, 0
                worker.conn = conn
            request = {"worker": worker.group, "socket": worker.socket, **worker_client.here()}
            try:
                worker_client.send_request(conn, request, [1, 2])
                for line in conn.makefile("r", encoding="utf-8"):
                    message = json.loads(line)
                    pid = int(message.get("pid", pid))
                    if "exit" in message:
                        return int(message["exit"]), pid
            except OSError:
                pass  # retired (its connection shut down), or the launcher went away
            finally:
                with self.lock:
                    worker.conn = None
        return KILLED_WITH_LAUNCHER, pid  # the launcher ended without reporting: the worker died with it


def _interrupted(status: int) -> bool:
    """The run is being stopped (Ctrl-C, ``lamflow stop``): nothing is restarted."""
    return status in (130, -signal.SIGINT, -signal.SIGTERM)


def _report(what: str, pid: int, status: int) -> None:
    print(f"lamflow: {what} (pid {pid}) ended with status {status}", file=sys.stderr, flush=True)
