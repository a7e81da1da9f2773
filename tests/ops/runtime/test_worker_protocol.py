"""The worker/client protocol, in this process: the worker's side of one request (``serve_one``) against a
hand-written client, and the client's ``main`` against a hand-written worker — including the paths a
live run rarely takes (a worker that dies mid-step, no worker at all, a run that has ended)."""

from __future__ import annotations

import json
import os
import signal
import socket
import sys
import threading
from pathlib import Path

import pytest

from lamflow.ops import dp
from lamflow.ops.runtime import worker, worker_client
from lamflow.ops.runtime.worker_client import HEADER


def send_request(sock: socket.socket, out_fd: int, script: Path, cwd: Path, env: dict[str, str]) -> None:
    worker_client.send_request(sock, {"script": str(script), "cwd": str(cwd), "env": env}, [out_fd])


def answers(sock: socket.socket) -> list[dict]:
    sock.shutdown(socket.SHUT_WR)
    return [json.loads(line) for line in sock.makefile("r", encoding="utf-8")]


def serve(script_body: str, tmp_path: Path, env: dict[str, str] | None = None) -> tuple[list[dict], str]:
    """One request through ``worker.serve_one``; returns the answers and what the step wrote."""
    script = tmp_path / "step.py"
    script.write_text(script_body)
    out = tmp_path / "out.txt"
    client, server = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
    with client, server, out.open("wb") as sink:
        send_request(client, sink.fileno(), script, tmp_path, env if env is not None else {"STEP": "1"})
        worker.serve_one(server, worker.Isolation.capture())
        server.shutdown(socket.SHUT_WR)
        replies = answers(client)
    return replies, out.read_text()


def test_serve_one_runs_the_script_in_its_directory_and_environment_then_puts_them_back(tmp_path):
    cwd, environ, argv, path = os.getcwd(), dict(os.environ), list(sys.argv), list(sys.path)
    body = (
        "import os, sys\n"
        "print('cwd', os.getcwd(), 'env', os.environ.get('STEP'), 'argv', sys.argv, flush=True)\n"
        "os.environ['LEAK'] = '1'; sys.path.insert(0, '/leak'); os.chdir('/')\n"
        "print('to stderr', file=sys.stderr)\n"
        "sys.exit(3)\n"
    )
    replies, output = serve(body, tmp_path)
    assert replies == [{"pid": os.getpid()}, {"exit": 3}]
    assert f"cwd {tmp_path} env 1 argv ['{tmp_path / 'step.py'}']" in output and "to stderr" in output
    assert (os.getcwd(), dict(os.environ), sys.argv, sys.path) == (cwd, environ, argv, path)


@pytest.mark.parametrize(
    ("body", "status", "said"),
    [
        ("print('fine')", 0, "fine"),
        ("raise ValueError('bad step')", 1, "ValueError: bad step"),
        ("import sys; sys.exit('no input')", 1, "no input"),
    ],
)
def test_serve_one_answers_the_scripts_exit_status(tmp_path, body, status, said):
    replies, output = serve(body, tmp_path)
    assert replies[-1] == {"exit": status} and said in output


def test_serve_one_announces_the_dp_log_so_a_client_can_show_it_if_the_worker_dies(tmp_path, monkeypatch):
    monkeypatch.setattr(dp, "IN_WORKER", True)
    body = "from pathlib import Path\nfrom lamflow.ops import dp\ndp.announce_log(Path('dp.log'), 7)\n"
    replies, _ = serve(body, tmp_path)
    assert replies == [{"pid": os.getpid()}, {"log": "dp.log", "offset": 7}, {"exit": 0}]
    assert dp.announce_log is None


def test_serve_one_refuses_a_request_without_a_descriptor():
    client, server = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
    with client, server:
        client.sendall(HEADER.pack(2) + b"{}")
        with pytest.raises(ConnectionError, match="malformed request"):
            worker.serve_one(server, worker.Isolation.capture())


def test_serve_one_refuses_a_request_cut_short(tmp_path):
    client, server = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
    with client, server, (tmp_path / "out").open("wb") as sink:
        socket.send_fds(client, [HEADER.pack(100)], [sink.fileno()])
        client.sendall(b'{"script"')
        client.shutdown(socket.SHUT_WR)
        with pytest.raises(ConnectionError, match="cut short"):
            worker.serve_one(server, worker.Isolation.capture())


class FakeWorker:
    """Listens where a group's worker would, takes one request and answers with ``replies`` (then closes:
    a reply list without ``exit`` is a worker that died during the step)."""

    def __init__(self, sock_path: str, replies: list[dict]) -> None:
        self.listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.listener.bind(sock_path)
        self.listener.listen(1)
        self.replies = replies
        self.request: dict = {}
        self.received_fd_is_stdout = False
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        conn, _ = self.listener.accept()
        with conn:
            request, fd = worker._receive(conn)
            self.request = request
            self.received_fd_is_stdout = os.path.sameopenfile(fd, 1)
            os.close(fd)
            for reply in self.replies:
                conn.sendall((json.dumps(reply) + "\n").encode())
        self.listener.close()


@pytest.fixture
def sock_path(tmp_path_factory):
    # AF_UNIX paths are limited to ~108 bytes: pytest's tmp_path can be longer
    return os.path.join(str(tmp_path_factory.mktemp("w")), "w.sock")


def test_client_hands_over_its_stdout_cwd_and_environment_and_exits_with_the_workers_answer(
    sock_path, tmp_path, monkeypatch
):
    fake = FakeWorker(sock_path, [{"pid": 42}, {"exit": 5}])
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("STEP_VAR", "x")
    assert worker_client.main(["client", sock_path, sys.executable, "script.py"]) == 5
    fake.thread.join(5)
    assert fake.request["script"] == "script.py" and fake.request["cwd"] == str(tmp_path)
    assert fake.request["env"]["STEP_VAR"] == "x" and fake.received_fd_is_stdout


def test_client_reports_a_worker_killed_during_the_step_with_its_signal_and_log_tail(
    sock_path, tmp_path, capfd
):
    log = tmp_path / "dp.log"
    log.write_text("earlier run\n" + "".join(f"line {i}\n" for i in range(50)))
    offset = len("earlier run\n")
    fake = FakeWorker(sock_path, [{"pid": 4242}, {"log": str(log), "offset": offset}])
    Path(worker_client.death_note(sock_path, 4242)).write_text("-9\n")
    assert worker_client.main(["client", sock_path, sys.executable, "script.py"]) == 128 + 9
    fake.thread.join(5)
    out = capfd.readouterr().out
    assert f"--- last lines of {log} ---" in out and "line 49" in out and "line 9\n" not in out
    assert "earlier run" not in out
    assert "worker process (pid 4242) was killed by signal 9 (SIGKILL) while running this step" in out


def test_client_reports_a_worker_that_vanished_without_a_death_note(sock_path, monkeypatch, capfd):
    monkeypatch.setattr(worker_client, "DEATH_NOTE_WAIT_S", 0.2)
    FakeWorker(sock_path, [{"pid": 7}]).thread.join(0)
    assert worker_client.main(["client", sock_path, sys.executable, "script.py"]) == 1
    assert "(pid 7) ended without an answer" in capfd.readouterr().out


@pytest.mark.parametrize(
    ("status", "words"),
    [
        (-9, "was killed by signal 9 (SIGKILL)"),
        (-200, "was killed by signal 200 (signal 200)"),
        (2, "exited with 2"),
    ],
)
def test_client_describes_how_a_worker_ended(status, words):
    assert worker_client._describe(status) == words


def test_client_without_a_worker_execs_the_script_in_a_fresh_interpreter(sock_path, monkeypatch, capfd):
    monkeypatch.setattr(worker_client, "CONNECT_TIMEOUT_S", 0.2)
    called = []

    def execv(path, args):
        called.append((path, args))
        raise SystemExit(0)

    monkeypatch.setattr(os, "execv", execv)
    with pytest.raises(SystemExit):
        worker_client.main(["client", sock_path, "/usr/bin/python3", "script.py"])
    assert called == [("/usr/bin/python3", ["/usr/bin/python3", "script.py"])]
    assert "running the step in its own process" in capfd.readouterr().out


def test_client_of_an_ended_run_does_not_start_the_step(tmp_path, capfd):
    gone = tmp_path / "gone" / "w.sock"
    assert worker_client.main(["client", str(gone), sys.executable, "script.py"]) == 1
    assert "the run has ended; step not started" in capfd.readouterr().out


def test_worker_serves_requests_until_interrupted(sock_path, tmp_path, monkeypatch):
    """``bind`` then ``serve_on``: warms up, serves one connection after another; a dropped request is
    reported and the next one is served."""
    monkeypatch.setenv("LAMFLOW_DP", "fake")  # no DeePMD-kit import
    monkeypatch.setattr(dp, "IN_WORKER", False)
    script = tmp_path / "step.py"
    script.write_text("print('served')")
    out = tmp_path / "out.txt"
    results: list[object] = []

    def connected() -> socket.socket:
        """A connection once the worker listens, by the real client's retrying connect (the socket file
        exists from bind, before listen: a connect in between is refused)."""
        sock = worker_client.connect(sock_path)
        assert sock is not None, "the worker never listened"
        return sock

    def clients() -> None:
        with connected() as broken:
            broken.sendall(HEADER.pack(2) + b"{}")
        with connected() as good, out.open("wb") as sink:
            send_request(good, sink.fileno(), script, tmp_path, {})
            results.extend(answers(good))
        os.kill(os.getpid(), signal.SIGINT)

    thread = threading.Thread(target=clients, daemon=True)
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        thread.start()
        with pytest.raises(KeyboardInterrupt):
            worker.serve_on(worker.bind(sock_path))
    finally:
        signal.signal(signal.SIGINT, previous)
    thread.join(5)
    assert results == [{"pid": os.getpid()}, {"exit": 0}] and out.read_text() == "served\n"
