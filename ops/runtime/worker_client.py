"""The command a grouped step runs: hands the step's script to its group's worker process and waits.

Run as ``python -I -S worker_client.py SOCKET PYTHON SCRIPT`` (standard library only, so it starts in
tens of milliseconds; dflow appends SCRIPT). It passes its own standard output — the pipe into the step's
``log.txt`` — to the worker (:mod:`lamflow.ops.runtime.worker`), which runs the script there and answers
with its exit status; this process then exits with that status, so the step succeeds or fails as if it had run
the script itself. When the worker dies during the step (a segfault, the kernel's OOM killer), the step
fails with the signal, read from the file the engine writes when it reaps the worker. When no worker
answers at all, the script runs here instead, in a fresh interpreter, as an ungrouped step would.
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


def death_note(socket_path: str, pid: int) -> str:
    """Where the engine writes a dead worker's exit status (shared with lamflow.workflows.engines)."""
    return f"{socket_path}.{pid}.exit"


class RunEnded(Exception):
    """The engine removed the workers' directory: its run is over."""


def _connect(socket_path: str) -> socket.socket | None:
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


def main(argv: list[str]) -> int:
    socket_path, python, script = argv[1], argv[2], argv[3]
    try:
        sock = _connect(socket_path)
    except RunEnded:
        print("lamflow: the run has ended; step not started", flush=True)
        return 1
    if sock is None:
        print(f"lamflow: no step worker at {socket_path}; running the step in its own process", flush=True)
        os.execv(python, [python, script])
    request = json.dumps({"script": script, "cwd": os.getcwd(), "env": dict(os.environ)}).encode()
    sys.stdout.flush()
    with sock:
        socket.send_fds(sock, [HEADER.pack(len(request))], [1])
        sock.sendall(request)
        answers = sock.makefile("r", encoding="utf-8")
        pid = 0
        log: dict[str, object] = {}
        for line in answers:
            message = json.loads(line)
            if "pid" in message:
                pid = message["pid"]
            if "log" in message:
                log = message
            if "exit" in message:
                return int(message["exit"])
    if log:
        _show_tail(str(log["log"]), int(str(log["offset"])))
    return _worker_died(socket_path, pid)


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
