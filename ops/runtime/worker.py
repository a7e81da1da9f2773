"""A step worker: one long-lived process that runs the short steps of a group, one after another.

The local engine has the step launcher fork its workers (:mod:`lamflow.ops.runtime.launcher`), so that a
worker starts with dflow and the ops imported; ``python -m
lamflow.ops.runtime.worker SOCKET`` starts one on its own. Either way, a worker imports what it lacks of
dflow, the ops and DeePMD-kit (not DeePMD-kit when ``LAMFLOW_DP`` replaces it), then serves requests from
:mod:`lamflow.ops.runtime.worker_client`: run this step's dflow script, in this directory, with this
environment, writing to this file descriptor. Inside the worker, :func:`lamflow.ops.dp.run_dp` calls
DeePMD-kit's entry point in-process with the argument list it would give the ``dp`` program, so a step pays
neither an interpreter nor a torch + DeePMD-kit start-up.

Each step still runs as its own unit: :class:`Isolation` puts back, after every step, what a step may
change in a process — working directory, environment, ``sys.argv``/``sys.path``, logging handlers and
levels, warning filters, signal handlers, dflow's config, torch's thread count, default dtype, device and
grad mode, and the random states of torch, NumPy and ``random`` (restored to the state the worker had
before its first step, as a fresh process would have them).
"""

from __future__ import annotations

import builtins
import copy
import importlib
import json
import logging
import os
import random
import signal
import socket
import sys
import traceback
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from lamflow.ops import dp
from lamflow.ops.runtime.worker_client import read_request

OP_MODULES = ("change_bias", "freeze", "test", "pretrain", "finetune")


def warm_up(deepmd: bool) -> None:
    """Import what every step needs, so that the first step does not pay for it."""
    importlib.import_module("dflow.python")
    for name in OP_MODULES:
        importlib.import_module(f"lamflow.ops.{name}")
    if deepmd:
        dp.import_deepmd()


@dataclass
class _LoggerState:
    handlers: list[logging.Handler]
    level: int
    propagate: bool
    disabled: bool


def _loggers() -> dict[str, logging.Logger]:
    found = {
        name: obj
        for name, obj in logging.Logger.manager.loggerDict.items()
        if isinstance(obj, logging.Logger)
    }
    return {"": logging.getLogger(), **found}


@dataclass
class Isolation:
    """The process state a step may change, captured once; :meth:`restore` puts it back."""

    cwd: str
    environ: dict[str, str]
    argv: list[str]
    path: list[str]
    loggers: dict[str, _LoggerState]
    warning_filters: list[Any]
    showwarning: Callable[..., Any]
    signals: dict[int, Any]
    dflow: tuple[dict[str, Any], dict[str, Any]]
    streams: tuple[Any, Any]
    random_states: dict[str, Any] = field(default_factory=dict)
    torch_settings: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def capture(cls) -> Isolation:
        import dflow

        state = cls(
            cwd=os.getcwd(),
            environ=dict(os.environ),
            argv=list(sys.argv),
            path=list(sys.path),
            loggers={
                name: _LoggerState(list(lg.handlers), lg.level, lg.propagate, lg.disabled)
                for name, lg in _loggers().items()
            },
            warning_filters=list(warnings.filters),
            showwarning=warnings.showwarning,
            signals={s: signal.getsignal(s) for s in (signal.SIGTERM, signal.SIGINT)},
            dflow=(copy.deepcopy(dflow.config), copy.deepcopy(dflow.s3_config)),
            streams=(sys.stdout, sys.stderr),
        )
        state.random_states["random"] = random.getstate()
        if "numpy" in sys.modules:
            state.random_states["numpy"] = sys.modules["numpy"].random.get_state()
        if "torch" in sys.modules:
            torch = sys.modules["torch"]
            state.random_states["torch"] = torch.random.get_rng_state()
            state.torch_settings = {
                "threads": torch.get_num_threads(),
                "dtype": torch.get_default_dtype(),
                "grad": torch.is_grad_enabled(),
                "device": torch.get_default_device() if hasattr(torch, "get_default_device") else None,
            }
        return state

    def restore(self) -> None:
        import dflow

        os.chdir(self.cwd)
        os.environ.clear()
        os.environ.update(self.environ)
        sys.argv[:] = self.argv
        sys.path[:] = self.path
        sys.stdout, sys.stderr = self.streams
        for name, lg in _loggers().items():
            before = self.loggers.get(name) or _LoggerState([], logging.NOTSET, True, False)
            for handler in list(lg.handlers):
                if handler not in before.handlers:
                    lg.removeHandler(handler)
                    handler.close()
            lg.handlers[:] = before.handlers
            lg.setLevel(before.level)
            lg.propagate, lg.disabled = before.propagate, before.disabled
        warnings.filters[:] = self.warning_filters  # type: ignore[index]
        warnings.showwarning = self.showwarning
        for signum, handler in self.signals.items():
            signal.signal(signum, handler)
        for live, saved in zip((dflow.config, dflow.s3_config), self.dflow, strict=True):
            live.clear()
            live.update(copy.deepcopy(saved))
        random.setstate(self.random_states["random"])
        if "numpy" in self.random_states:
            sys.modules["numpy"].random.set_state(self.random_states["numpy"])
        if "torch" in sys.modules and self.torch_settings:
            torch = sys.modules["torch"]
            torch.random.set_rng_state(self.random_states["torch"])
            torch.set_num_threads(self.torch_settings["threads"])
            torch.set_default_dtype(self.torch_settings["dtype"])
            torch.set_grad_enabled(self.torch_settings["grad"])
            if self.torch_settings["device"] is not None:
                torch.set_default_device(self.torch_settings["device"])


def run_script(script: str) -> int:
    """Run a step's dflow script as ``python SCRIPT`` would in a fresh process; returns its exit status."""
    try:
        with open(script, encoding="utf-8") as f:
            code = compile(f.read(), script, "exec")
        exec(code, {"__name__": "__main__", "__file__": script, "__builtins__": builtins})
        return 0
    except SystemExit as exc:
        return dp.exit_status(exc)
    except KeyboardInterrupt:
        raise
    except BaseException:
        traceback.print_exc()
        return 1


def _receive(conn: socket.socket) -> tuple[dict[str, Any], int]:
    request, fds = read_request(conn, 1)
    return request, fds[0]


def serve_one(conn: socket.socket, baseline: Isolation) -> None:
    """One step: output to the client's descriptor, answers (pid, then exit status) on the connection."""
    request, out_fd = _receive(conn)
    conn.sendall((json.dumps({"pid": os.getpid()}) + "\n").encode())
    dp.announce_log = lambda path, offset: conn.sendall(
        (json.dumps({"log": str(path), "offset": offset}) + "\n").encode()
    )
    try:
        with dp.output_to(out_fd):
            os.close(out_fd)
            os.chdir(request["cwd"])
            os.environ.clear()
            os.environ.update(request["env"])
            sys.argv[:] = [request["script"]]
            status = run_script(request["script"])
    finally:
        dp.announce_log = None
        baseline.restore()
    conn.sendall((json.dumps({"exit": status}) + "\n").encode())


def bind(socket_path: str) -> socket.socket:
    """The worker's listening socket. A worker binds first, so that clients may connect while it warms
    up (a worker's socket lives in it alone: no other process can keep a dead worker's clients waiting)."""
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(socket_path)
    listener.listen(64)
    return listener


def serve_on(listener: socket.socket) -> None:
    """Warm up, then serve the steps that connect to ``listener`` (bound and listening) forever."""
    dp.IN_WORKER = True
    warm_up(deepmd=dp.real_dp())
    baseline = Isolation.capture()
    while True:
        conn, _ = listener.accept()
        with conn:
            try:
                serve_one(conn, baseline)
            except (ConnectionError, OSError) as exc:
                print(f"lamflow worker: request dropped ({exc})", file=sys.stderr, flush=True)


def main(argv: list[str]) -> None:
    import argparse

    parser = argparse.ArgumentParser(
        prog="python -m lamflow.ops.runtime.worker", description=__doc__.splitlines()[0]
    )
    parser.add_argument("socket")
    args = parser.parse_args(argv)
    sys.exit(run(bind(args.socket)))


def run(listener: socket.socket) -> int:
    """A worker process's life on ``listener``: its exit status (130 after Ctrl-C or ``lamflow stop``:
    the run is ending)."""
    sys.stdout, sys.stderr = dp.fd_stream(1), dp.fd_stream(2)
    try:
        serve_on(listener)
    except KeyboardInterrupt:
        return 130
    return 0  # pragma: no cover - serve_on returns only by an exception


if __name__ == "__main__":
    main(sys.argv[1:])
