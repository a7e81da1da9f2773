"""Shared fixtures: paths, spec writing, and running ``lamflow`` (in this process, or as its installed
entry point in a process of its own)."""

from __future__ import annotations

import json
import os
import shlex
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]
EXAMPLES = REPO / "examples"
DEMO_DATA = EXAMPLES / "data"
SHARED_DATASETS = REPO.parent / "shared" / "data" / "datasets"
LAMFLOW = Path(sys.executable).with_name("lamflow")
FAKE_DP = Path(__file__).resolve().with_name("fake_dp.py")
FAKE_DP_COMMAND = f"{shlex.quote(sys.executable)} {shlex.quote(str(FAKE_DP))}"


@dataclass
class FakeDp:
    """The fake ``dp`` as configured for a test: its environment and the calls it received."""

    log: Path

    @property
    def env(self) -> dict[str, str]:
        """The fake dp, and an artifact store of its own (runs sharing a FakeDp share the step cache)."""
        return {
            "LAMFLOW_DP": FAKE_DP_COMMAND,
            "LAMFLOW_FAKE_DP_LOG": str(self.log),
            "LAMFLOW_STORE": str(self.log.parent / "store"),
        }

    def calls(self) -> list[list[str]]:
        """argv (after the program) of every call so far, in order."""
        if not self.log.exists():
            return []
        return [json.loads(line)["argv"] for line in self.log.read_text().splitlines()]

    def records(self) -> list[dict[str, Any]]:
        """Every call so far: {"argv", "cwd", "pid"} (the pid of the process that ran it)."""
        if not self.log.exists():
            return []
        return [json.loads(line) for line in self.log.read_text().splitlines()]


@pytest.fixture
def fake_dp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> FakeDp:
    """Route every ``dp`` call of this test (in-process and in subprocesses) to tests/fake_dp.py."""
    fake = FakeDp(tmp_path / "fake-dp-calls.jsonl")
    for key, value in fake.env.items():
        monkeypatch.setenv(key, value)
    return fake


@contextmanager
def session_environment(values: dict[str, str], keep_set: bool = False) -> Iterator[None]:
    """Environment variables for a session fixture's lifetime (``keep_set``: a variable already set keeps
    its value), the previous values put back at the end."""
    saved = {k: os.environ.get(k) for k in values}
    for key, value in values.items():
        if keep_set:
            os.environ.setdefault(key, value)
        else:
            os.environ[key] = value
    try:
        yield
    finally:
        for key, before in saved.items():
            if before is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = before


@pytest.fixture(scope="session", autouse=True)
def session_store(tmp_path_factory: pytest.TempPathFactory):
    """Module and session fixtures run before function ones: never let them use the user's store. The fake
    dp remembers for the session what DeePMD-kit's parser and argcheck made of its command lines and
    training inputs (tests/fake_dp.py)."""
    root = tmp_path_factory.mktemp("session-store")
    with session_environment(
        {
            "LAMFLOW_STORE": str(root / "store"),
            "LAMFLOW_CACHE_DIR": str(root / "cache"),
            "LAMFLOW_FAKE_DP_CACHE": str(root / "fake-dp"),
        }
    ):
        yield


THREAD_VARIABLES = ("OMP_NUM_THREADS", "DP_INTRA_OP_PARALLELISM_THREADS", "DP_INTER_OP_PARALLELISM_THREADS")


@pytest.fixture(scope="session", autouse=True)
def threads_per_test_worker():
    """Each pytest worker's share of the cores for what DeePMD-kit and torch run (OpenMP, torch's intra-
    and inter-op pools): with two workers on two cores, two real ``dp`` processes would otherwise run four
    spinning threads on two cores. Measured on examples/distill.yaml (shortened, one run alone): one thread
    trains as fast as two for these tiny models, so the share costs nothing and halves the slow tier's
    contention. A value already set is kept."""
    workers = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))
    share = str(max(1, (os.cpu_count() or 1) // workers))
    # ... and the local engine hands out only that share, so that the runs of two pytest workers do not
    # each run a step per core (tests of the scheduler set their own machine: test_slots_run.py)
    values = {**dict.fromkeys(THREAD_VARIABLES, share), "LAMFLOW_LOCAL_CORES": share}
    with session_environment(values, keep_set=True):
        yield


@pytest.fixture(autouse=True)
def private_store(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Every test gets its own artifact store and dataset cache (never the user's, never another test's)."""
    root = tmp_path_factory.mktemp("store")
    monkeypatch.setenv("LAMFLOW_STORE", str(root / "store"))
    monkeypatch.setenv("LAMFLOW_CACHE_DIR", str(root / "cache"))
    # the report (matplotlib, ~1-3 s a run) is tested where it is the subject: tests/workflows/report
    monkeypatch.setenv("LAMFLOW_REPORT", "0")
    return root / "store"


@pytest.fixture(scope="session")
def s3_server():
    """One moto S3 server per test worker."""
    from tests.s3_server import S3Server

    server = S3Server().start()
    yield server
    server.stop()


@pytest.fixture
def s3(s3_server, monkeypatch: pytest.MonkeyPatch, request: pytest.FixtureRequest):
    """The moto server with the standard AWS variables set and a fresh bucket for this test."""
    import re

    for key, value in s3_server.env.items():
        monkeypatch.setenv(key, value)
    monkeypatch.delenv("AWS_PROFILE", raising=False)
    bucket = re.sub(r"[^a-z0-9-]+", "-", request.node.name.lower())[:50].strip("-") + "-b"
    s3_server.bucket(bucket)
    s3_server.test_bucket = bucket
    return s3_server


@pytest.fixture
def write_spec(tmp_path: Path):
    """Write a spec dict (or text) as YAML into tmp_path and return its path."""

    def write(spec: dict[str, Any] | str, name: str = "spec.yaml") -> Path:
        path = tmp_path / name
        path.write_text(spec if isinstance(spec, str) else yaml.safe_dump(spec, sort_keys=False))
        return path

    return write


def minimal_spec(**overrides: Any) -> dict[str, Any]:
    """A valid spec on the bundled demo data: 2-head pretrain, one finetune, two test groups."""
    spec: dict[str, Any] = {
        "name": "mini",
        "datasets": {
            "water": {"path": str(DEMO_DATA / "water/train")},
            "molecules": {"path": str(DEMO_DATA / "molecules/train")},
            "gete": {"path": str(DEMO_DATA / "gete/train")},
            "gete-test": {"path": str(DEMO_DATA / "gete/test")},
        },
        "model": {"preset": "dpa2-tiny"},
        "stages": {
            "pretrain": {
                "heads": {"water": {"datasets": ["water"]}, "molecules": {"datasets": ["molecules"]}},
                "training": {"steps": 10},
            },
            "finetune": [
                {"name": "gete", "from": {"head": "water"}, "datasets": ["gete"], "training": {"steps": 10}}
            ],
            "test": [
                {"models": ["pretrain.water"], "datasets": ["gete-test"], "change_bias_on": "gete"},
                {"models": ["finetune.gete"], "datasets": ["gete-test"]},
            ],
        },
    }
    spec.update(overrides)
    return spec


def run_cli(
    *args: str, cwd: Path | None = None, env: dict[str, str] | None = None, timeout: float = 900
) -> subprocess.CompletedProcess[str]:
    """Run ``lamflow ARGS`` in this process, as the console script would run in a process of its own: the
    console script's ``main`` (one-line errors, exit codes), ``sys.argv``, the environment with ``env`` on
    top, the working directory, and file descriptors 1 and 2 captured (what the engine and its steps write
    there, too); all put back afterwards. Saves the interpreter's and the imports' start-up (1-3 s a call
    on two busy cores). Tests of signals, ``lamflow stop``, concurrent runs or the installed entry point use
    :func:`run_cli_process`. ``timeout`` applies to :func:`run_cli_process` only."""
    from lamflow.workflows.cli.app import main

    saved_env, saved_cwd, saved_argv = dict(os.environ), os.getcwd(), sys.argv
    saved_streams = sys.stdout, sys.stderr
    out, err = tempfile.TemporaryFile(), tempfile.TemporaryFile()
    sys.stdout.flush()
    sys.stderr.flush()
    saved_fds = os.dup(1), os.dup(2)
    code: int | str | None = 0
    try:
        os.environ.update(env or {})
        if cwd is not None:
            os.chdir(cwd)
        sys.argv = ["lamflow", *args]
        os.dup2(out.fileno(), 1)
        os.dup2(err.fileno(), 2)
        sys.stdout = open(1, "w", encoding="utf-8", closefd=False)  # noqa: SIM115 - closed below
        sys.stderr = open(2, "w", encoding="utf-8", closefd=False)  # noqa: SIM115
        try:
            main()
        except SystemExit as exc:
            code = exc.code
    finally:
        for stream in (sys.stdout, sys.stderr):
            stream.flush()
            if stream not in saved_streams:
                stream.close()
        sys.stdout, sys.stderr = saved_streams
        os.dup2(saved_fds[0], 1)
        os.dup2(saved_fds[1], 2)
        for fd in saved_fds:
            os.close(fd)
        sys.argv = saved_argv
        os.chdir(saved_cwd)
        os.environ.clear()
        os.environ.update(saved_env)
    if isinstance(code, str):  # sys.exit("message"): printed to stderr, exit status 1
        err.write(code.encode() + b"\n")
        code = 1
    texts = []
    for stream in (out, err):
        stream.seek(0)
        texts.append(stream.read().decode("utf-8", errors="replace"))
        stream.close()
    argv = [str(LAMFLOW), *args]
    return subprocess.CompletedProcess(argv, code or 0, stdout=texts[0], stderr=texts[1])


def run_cli_process(
    *args: str, cwd: Path | None = None, env: dict[str, str] | None = None, timeout: float = 900
) -> subprocess.CompletedProcess[str]:
    """Run the installed ``lamflow`` console script as a process of its own."""
    full_env = {**os.environ, **(env or {})}
    return subprocess.run(
        [str(LAMFLOW), *args], cwd=cwd, env=full_env, capture_output=True, text=True, timeout=timeout
    )
