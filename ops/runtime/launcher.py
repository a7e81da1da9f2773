"""A step launcher: a prestarted interpreter that forks one process per step, so that a step that runs in a
process of its own (training, MD, exploration) does not pay for starting Python and importing dflow.

``python -m lamflow.ops.runtime.launcher SOCKET [--preload MODULE ...]`` binds a Unix socket, imports dflow,
every step op and what the run's ops import when they run once,
then serves requests from :mod:`lamflow.ops.runtime.worker_client` (the same client and protocol as a step
group's worker): run this step's dflow script, in this directory, with this environment and these signal
dispositions, writing to these file descriptors. Unlike a worker, it runs each script in a child it forks
for that step: the step is a process of its own, exactly as when dflow starts ``python SCRIPT`` — its own
pid (signals reach it as before), memory, ``dp`` subprocess and exit status — less the ~1 s of start-up.
The client gets the child's pid, then its exit status (minus the signal number when a signal killed it).

On a machine without GPUs, with the real DeePMD-kit, the engine also has it import torch and DeePMD-kit
once (``--preload deepmd...``): each training, MD, model-deviation or teacher-label step forked from it
then runs DeePMD-kit without the ~6 s of CPU that importing them costs every new process — its Python API
directly, and each ``dp`` command in a child the step forks (:func:`lamflow.ops.dp.in_process_entry`):
a process of its own, as the ``dp`` program was, with the same log, signals and exit status.

It also forks the run's step workers (:mod:`lamflow.ops.runtime.worker`): the engine asks for one with a
request naming its group and socket, and gets the worker's pid, then its exit status, by the same
protocol. A worker forked here starts with dflow
and the ops imported (a worker started as a program spent ~1.5 s of CPU importing them, for every group of
every run), and dies with the launcher.

The launcher itself ignores SIGINT (Ctrl-C and ``lamflow stop`` reach every step process directly); on
SIGTERM it ends its children and exits. A child whose client goes away (its dflow step was killed) gets
SIGTERM. The launcher is single-threaded: it forks from a select loop that wakes on SIGCHLD.
"""

from __future__ import annotations

import ctypes
import importlib
import io
import json
import os
import pkgutil
import random
import select
import signal
import socket
import sys
import traceback
from collections.abc import Sequence
from typing import Any

from lamflow.ops import dp
from lamflow.ops.dp import flush_std
from lamflow.ops.runtime import worker
from lamflow.ops.runtime.worker_client import PASSED_SIGNALS, read_request

PR_SET_PDEATHSIG = 1  # <linux/prctl.h>


def warm_up(preload: Sequence[str] = ()) -> None:
    """Import dflow, every step op, and ``preload``: the modules the run's ops import when they run (their
    ``preload``, e.g. ASE's readers or DeePMD-kit's model deviation, which needs no torch) and, where
    the engine asks for them, DeePMD-kit's (:data:`lamflow.ops.dp.DEEPMD_MODULES`, see
    :func:`_prepare_for_deepmd`). A DeePMD-kit module that is not installed is skipped."""
    importlib.import_module("dflow.python")
    for module in pkgutil.iter_modules(importlib.import_module("lamflow.ops").__path__):
        if not module.ispkg:
            importlib.import_module(f"lamflow.ops.{module.name}")
    deepmd = [name for name in preload if name.split(".")[0] == "deepmd"]
    for name in preload:
        if name not in deepmd:
            importlib.import_module(name)
    if any(name in dp.DEEPMD_MODULES for name in deepmd):  # torch with them
        _prepare_for_deepmd()
    dp.import_deepmd(deepmd)


def _prepare_for_deepmd() -> None:
    """Before this process imports torch and DeePMD-kit and then forks steps from them. The engine asks for
    that only on a machine without GPUs: here no GPU is made visible to torch (DeePMD-kit's import asks
    torch whether CUDA is available, and a child cannot use a CUDA initialised before its fork). Thread
    counts: DeePMD-kit reads its variables when imported; inter-op 1, as every local step gets it, intra-op
    1 here (each step sets torch's thread count to its own cores, :mod:`lamflow.ops.runtime.slots`).
    Importing torch and DeePMD-kit starts none of torch's thread pools (they start with the first
    parallel operation), so each forked step starts them afresh, as a new process would."""
    os.environ["CUDA_VISIBLE_DEVICES"] = ""
    for name in ("DP_INTER_OP_PARALLELISM_THREADS", "DP_INTRA_OP_PARALLELISM_THREADS", "OMP_NUM_THREADS"):
        os.environ[name] = "1"


def _receive(conn: socket.socket) -> tuple[dict[str, Any], list[int]]:
    conn.settimeout(10.0)
    request, fds = read_request(conn, 2)
    conn.settimeout(None)
    return request, fds


def _std_stream(fd: int, unbuffered: bool, line_buffered: bool) -> io.TextIOWrapper:
    """fd 1 or 2 as a fresh interpreter would open it."""
    raw = io.FileIO(fd, "w", closefd=False)
    if unbuffered:
        return io.TextIOWrapper(raw, encoding="utf-8", errors="backslashreplace", write_through=True)
    return io.TextIOWrapper(
        io.BufferedWriter(raw), encoding="utf-8", errors="backslashreplace", line_buffering=line_buffered
    )


def _become(request: dict[str, Any], fds: list[int]) -> None:
    """In the forked child: take on the client's output descriptors (the first two of ``fds``), directory,
    environment and signal dispositions, and random seeds of its own."""
    out = fds[0]
    err = fds[1] if len(fds) > 1 else out
    os.dup2(out, 1)
    os.dup2(err, 2)
    for fd in set(fds[:2]):
        if fd > 2:
            os.close(fd)
    os.chdir(request["cwd"])
    os.environ.clear()
    os.environ.update(request["env"])
    unbuffered = bool(os.environ.get("PYTHONUNBUFFERED"))
    sys.stdout = _std_stream(1, unbuffered, os.isatty(1))
    sys.stderr = _std_stream(2, unbuffered, True)
    for name in PASSED_SIGNALS:
        signum = getattr(signal, name)
        ignored = request.get("signals", {}).get(name) == "ignore"
        default = signal.default_int_handler if signum == signal.SIGINT else signal.SIG_DFL
        signal.signal(signum, signal.SIG_IGN if ignored else default)
    random.seed()  # a fresh process draws its own seeds; the fork would share the launcher's
    if "numpy" in sys.modules:
        sys.modules["numpy"].random.seed()


def _become_step(request: dict[str, Any], fds: list[int]) -> None:
    """In the forked child: become the process ``python SCRIPT`` would have been."""
    _become(request, fds)
    script = request["script"]
    sys.argv[:] = [script]
    sys.path[0] = os.path.dirname(os.path.abspath(script))


def _die_with_launcher(launcher_pid: int) -> None:
    """Have the kernel SIGKILL this process when the launcher ends (Linux ``PR_SET_PDEATHSIG``): a worker
    must not outlive the process that reports its end. A launcher that ended before the call: end now."""
    try:
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
    except (OSError, AttributeError):  # pragma: no cover - not Linux: the engine ends workers at exit
        pass
    if os.getppid() != launcher_pid:
        os.kill(os.getpid(), signal.SIGKILL)


def run_worker(request: dict[str, Any], fds: list[int], launcher_pid: int) -> int:
    """In the forked child: become the step worker of a group (``request["worker"]``) on the socket
    ``request["socket"]``; returns the worker's exit status."""
    _die_with_launcher(launcher_pid)
    _become(request, fds)
    sys.argv[:] = ["-m", "lamflow.ops.runtime.worker", request["socket"]]
    return worker.run(worker.bind(request["socket"]))


def run_child(request: dict[str, Any], fds: list[int]) -> int:
    """Run the step's script as ``python SCRIPT`` would; returns the exit status. An uncaught
    KeyboardInterrupt ends the process with SIGINT, as Python does."""
    _become_step(request, fds)
    dp.FORKED_STEP = True  # with DeePMD-kit imported here, the step runs each real dp in a fork of itself
    try:
        return worker.run_script(request["script"])  # exceptions: a traceback and status 1, as Python does
    except KeyboardInterrupt:
        traceback.print_exc()
        flush_std()
        signal.signal(signal.SIGINT, signal.SIG_DFL)
        os.kill(os.getpid(), signal.SIGINT)
        return 130  # pragma: no cover - not reached


def _exit_code(status: int) -> int:
    """A wait status as subprocess reports it: the exit status, or minus the signal that killed it."""
    return os.waitstatus_to_exitcode(status)


def _answer(conn: socket.socket, message: dict[str, Any]) -> None:
    try:
        conn.sendall((json.dumps(message) + "\n").encode())
    except OSError:
        pass  # the client went away; the step's status is lost with it


class Launcher:
    """The select loop: accepts requests, forks a child for each, reports each child's end."""

    def __init__(self, listener: socket.socket) -> None:
        self.listener = listener
        self.children: dict[int, socket.socket | None] = {}  # pid -> its client's connection (None: gone)
        self.wake_r, self.wake_w = os.pipe()
        os.set_blocking(self.wake_r, False)
        os.set_blocking(self.wake_w, False)
        self.terminating = False

    def serve(self) -> None:
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, self._on_term)
        signal.signal(signal.SIGCHLD, lambda *_: None)
        signal.set_wakeup_fd(self.wake_w)
        while not self.terminating:
            clients = {conn.fileno(): conn for conn in self.children.values() if conn is not None}
            listening = self.listener.fileno()
            ready, _, _ = select.select([listening, self.wake_r, *clients], [], [], 5.0)
            if self.wake_r in ready:
                while True:
                    try:
                        os.read(self.wake_r, 512)
                    except BlockingIOError:
                        break
            self._reap()
            for fd in ready:
                if fd in clients:
                    self._client_readable(clients[fd])
            if listening in ready and not self.terminating:
                self._accept()
        self._end_children()

    def _on_term(self, *_: object) -> None:
        self.terminating = True

    def _accept(self) -> None:
        conn, _ = self.listener.accept()
        try:
            request, fds = _receive(conn)
        except (ConnectionError, OSError, ValueError) as exc:
            print(f"lamflow launcher: request dropped ({exc})", file=sys.stderr, flush=True)
            conn.close()
            return
        flush_std()
        launcher_pid = os.getpid()
        pid = os.fork()
        if pid == 0:  # the step
            status = 1
            try:
                signal.set_wakeup_fd(-1)
                signal.signal(signal.SIGCHLD, signal.SIG_DFL)
                self.listener.close()
                conn.close()
                for other in self.children.values():
                    if other is not None:
                        other.close()
                os.close(self.wake_r)
                os.close(self.wake_w)
                if request.get("worker"):
                    status = run_worker(request, fds, launcher_pid)
                else:
                    status = run_child(request, fds)
            finally:
                flush_std()
                os._exit(status & 0xFF)
        for fd in set(fds):
            os.close(fd)
        self.children[pid] = conn
        _answer(conn, {"pid": pid, "forked": True})

    def _client_readable(self, conn: socket.socket) -> None:
        """A client sends nothing after its request: readable means it went away; end its step."""
        try:
            data = conn.recv(1, socket.MSG_PEEK)
        except OSError:
            data = b""
        if data:
            return
        for pid, other in list(self.children.items()):
            if other is conn:
                try:
                    os.kill(pid, signal.SIGTERM)
                except ProcessLookupError:
                    pass
                conn.close()
                self.children[pid] = None

    def _reap(self) -> None:
        while self.children:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return
            if pid == 0:
                return
            if pid not in self.children:
                continue
            conn = self.children.pop(pid)
            if conn is None:
                continue
            _answer(conn, {"exit": _exit_code(status)})
            conn.close()

    def _end_children(self) -> None:
        """SIGTERM: end every step, and tell each client how its step ended."""
        for pid in self.children:
            try:
                os.kill(pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
        for pid, conn in list(self.children.items()):
            try:
                _, status = os.waitpid(pid, 0)
            except ChildProcessError:
                continue
            if conn is not None:
                _answer(conn, {"exit": _exit_code(status)})
                conn.close()


def serve(socket_path: str, preload: Sequence[str] = ()) -> None:
    """Bind first (clients may connect while the imports run), warm up, then serve until SIGTERM."""
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(socket_path)
    listener.listen(64)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    warm_up(preload)
    Launcher(listener).serve()


def main(argv: list[str]) -> None:
    import argparse

    parser = argparse.ArgumentParser(
        prog="python -m lamflow.ops.runtime.launcher", description=__doc__.splitlines()[0]
    )
    parser.add_argument("socket")
    parser.add_argument("--preload", action="append", default=[], metavar="MODULE")
    args = parser.parse_args(argv)
    serve(args.socket, args.preload)


if __name__ == "__main__":
    main(sys.argv[1:])
