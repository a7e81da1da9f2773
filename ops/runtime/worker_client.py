"""The command a step runs when no interpreter is started for it: hands the step's script to its group's
worker process, or to the step launcher (:mod:`lamflow.ops.runtime.launcher`, which forks a process of
its own for the step), and waits.

Run as ``python -I -S worker_client.py SOCKET PYTHON SCRIPT`` (standard library only, so it starts in
tens of milliseconds; dflow appends SCRIPT). It passes its own standard output — the pipe into the step's
``log.txt`` — to the worker (:mod:`lamflow.ops.runtime.worker`), which runs the script there and answers
with its exit status; this process then exits with that status, so the step succeeds or fails as if it had run
the script itself. When the worker dies during the step (a segfault, the kernel's OOM killer), the step
fails with the signal, read from the file the engine writes when it reaps the worker. When no worker
answers at all, the script runs here instead, in a fresh interpreter, as an ungrouped step would.
With the launcher, this process stands in for the forked one (see :func:`_stand_in_for`).
"""

from __future__ import annotations

import json
import os
import signal
import socket
import struct
import sys
import time

CONNECT_TIMEOUT_S = 30.0  # a crashed worker is restarted by the engine within a second or two
DEATH_NOTE_WAIT_S = 5.0
HEADER = struct.Struct("!Q")
# the signals whose disposition (ignored or not) a client passes on to a forked step: what a fresh
# ``python SCRIPT`` started where the client was would have
PASSED_SIGNALS = ("SIGINT", "SIGTERM", "SIGHUP")


def read_request(conn: socket.socket, max_fds: int) -> tuple[dict[str, object], list[int]]:
    """The server side of a request (a step worker's or the step launcher's): the header with the file
    descriptors passed along, then the JSON body."""
    header, fds, _, _ = socket.recv_fds(conn, HEADER.size, max_fds)
    if len(header) != HEADER.size or not fds:
        for fd in fds:
            os.close(fd)
        raise ConnectionError("malformed request")
    size = HEADER.unpack(header)[0]
    body = bytearray()
    while len(body) < size:
        chunk = conn.recv(min(1 << 20, size - len(body)))
        if not chunk:
            raise ConnectionError("request cut short")
        body += chunk
    return json.loads(body), fds


def death_note(socket_path: str, pid: int) -> str:
    """Where the engine writes a dead worker's exit status (shared with lamflow.workflows.engines)."""
    return f"{socket_path}.{pid}.exit"


class RunEnded(Exception):
    """The engine removed the workers' directory: its run is over."""


def connect(socket_path: str) -> socket.socket | None:
    deadline = time.monotonic() + CONNECT_TIMEOUT_S
    while True:
        if not os.path.isdir(os.path.dirname(socket_path)):
            raise RunEnded
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            sock.connect(socket_path)
            return sock
        except OSError:
            sock.close()
            if time.monotonic() >= deadline:
                return None
            time.sleep(0.05)


def _describe(status: int) -> str:
    if status < 0:
        try:
            name = signal.Signals(-status).name
        except ValueError:
            name = f"signal {-status}"
        return f"was killed by signal {-status} ({name})"
    return f"exited with {status}"


def _worker_died(socket_path: str, pid: int) -> int:
    """Report a worker that died during this step; returns this step's exit status."""
    note = death_note(socket_path, pid)
    deadline = time.monotonic() + DEATH_NOTE_WAIT_S
    status = None
    while status is None and time.monotonic() < deadline:
        try:
            with open(note) as f:
                status = int(f.read().strip())
        except (OSError, ValueError):
            time.sleep(0.05)
    how = _describe(status) if status is not None else "ended without an answer"
    print(
        f"StepWorkerError: the step's worker process (pid {pid}) {how} while running this step; "
        "the group's remaining steps run in a fresh worker",
        flush=True,
    )
    return 128 - status if status is not None and status < 0 else 1


def dispositions() -> dict[str, str]:
    """Which of the signals a step may get this process ignores (a background job ignores SIGINT): a
    forked step process takes on the same, as a fresh interpreter started here would."""
    return {
        name: "ignore" if signal.getsignal(getattr(signal, name)) == signal.SIG_IGN else "default"
        for name in PASSED_SIGNALS
    }


def here() -> dict[str, object]:
    """What a process started here would take on: working directory, environment, ignored signals."""
    return {"cwd": os.getcwd(), "env": dict(os.environ), "signals": dispositions()}


def send_request(sock: socket.socket, request: dict[str, object], fds: list[int]) -> None:
    """The client side of :func:`read_request`: the header with ``fds`` passed along, then the JSON body."""
    body = json.dumps(request).encode()
    socket.send_fds(sock, [HEADER.pack(len(body))], fds)
    sock.sendall(body)


def _stand_in_for(pid: int) -> None:
    """The step runs in a process the launcher forked (``pid``): this one only stands in for it. Ctrl-C
    and ``lamflow stop`` reach that process directly, so SIGINT is ignored here and the step's own exit
    status awaited; a SIGTERM or SIGHUP sent to this process alone is passed on."""

    def forward(signum: int, _frame: object) -> None:
        try:
            os.kill(pid, signum)
        except ProcessLookupError:
            pass

    signal.signal(signal.SIGINT, signal.SIG_IGN)
    for signum in (signal.SIGTERM, signal.SIGHUP):
        if signal.getsignal(signum) != signal.SIG_IGN:
            signal.signal(signum, forward)


def _exit_as(status: int) -> int:
    """Exit with the step's status; a step killed by a signal ends this process with the same signal."""
    if status < 0:
        sys.stdout.flush()
        try:
            signal.signal(-status, signal.SIG_DFL)
        except (OSError, ValueError):  # SIGKILL, SIGSTOP: no handler to reset
            pass
        os.kill(os.getpid(), -status)
        time.sleep(1.0)  # pragma: no cover - the signal ends the process first
        return 128 - status  # pragma: no cover
    return status


def main(argv: list[str]) -> int:
    socket_path, python, script = argv[1], argv[2], argv[3]
    try:
        sock = connect(socket_path)
    except RunEnded:
        print("lamflow: the run has ended; step not started", flush=True)
        return 1
    if sock is None:
        print(f"lamflow: no step worker at {socket_path}; running the step in its own process", flush=True)
        os.execv(python, [python, script])
    sys.stdout.flush()
    with sock:
        send_request(sock, {"script": script, **here()}, [1])
        answers = sock.makefile("r", encoding="utf-8")
        pid, forked = 0, False
        log: dict[str, object] = {}
        for line in answers:
            message = json.loads(line)
            if "pid" in message:
                pid = message["pid"]
                forked = bool(message.get("forked"))
                if forked:
                    _stand_in_for(pid)
            if "log" in message:
                log = message
            if "exit" in message:
                return _exit_as(int(message["exit"]))
    if forked:
        return _launcher_died(pid)
    if log:
        _show_tail(str(log["log"]), int(str(log["offset"])))
    return _worker_died(socket_path, pid)


def _launcher_died(pid: int) -> int:
    """The launcher ended before it reported the step's end (it was killed): end the step too."""
    try:
        os.kill(pid, signal.SIGTERM)
    except ProcessLookupError:
        pass
    print(f"StepLauncherError: the step launcher ended while this step (pid {pid}) ran", flush=True)
    return 1


def _show_tail(path: str, offset: int, lines: int = 40) -> None:
    """The last lines the dp call wrote to its log before the worker died (some may not have been
    echoed yet)."""
    try:
        with open(path, "rb") as f:
            f.seek(offset)
            text = f.read().decode("utf-8", errors="replace")
    except OSError:
        return
    print(f"--- last lines of {path} ---", flush=True)
    print("".join(text.splitlines(keepends=True)[-lines:]).rstrip("\n"), flush=True)


if __name__ == "__main__":
    sys.exit(main(sys.argv))
