"""Slots: which GPUs and cores of this machine a step of a local run holds while it runs.

The local engine lays out one pool per run (``<run-dir>/slots/``: a lock file per GPU and per core, plus
``machine.json``) and gives every step three environment variables: the pool's directory, the step's key
and what it needs (``gpus=1,cores=2``). :func:`held` — entered by every op around its work
(:meth:`lamflow.ops.runtime.contract.LamflowOP.execute`) — waits until that many units are free, takes them
with ``flock`` and sets the step's process up to use exactly them:

- ``CUDA_VISIBLE_DEVICES`` lists its GPUs (empty when it holds none, so it never lands on another's GPU);
- ``OMP_NUM_THREADS``, ``MKL_NUM_THREADS`` and DeePMD-kit's ``DP_INTRA_OP_PARALLELISM_THREADS`` are its
  cores, ``DP_INTER_OP_PARALLELISM_THREADS`` is 1 and torch's thread count follows where torch is loaded
  (thread counts, not CPU affinity: two runs on one machine, each handing out all its cores, would pin
  their steps to the same cores; unpinned, the kernel spreads them);
- with more than one GPU, ``LAMFLOW_NPROC_PER_NODE`` makes training run under torchrun with one process
  per GPU (:func:`lamflow.ops.dp.launcher`, the command the Argo pods use).

The kernel drops a ``flock`` when its process ends, however it ends, so a step that fails, crashes or is
killed frees its units without anyone cleaning up. Taking units is all-or-nothing under one pool lock, so two
steps never deadlock on half-taken sets. What a step got is written to ``granted/<key>.json`` (read by the
run's summary, ``lamflow status`` and the report). Outside a local run (Argo pods, tests of single ops) the
variables are absent and :func:`held` does nothing. Light to import (the standard library and the ``dp``
seam's names): every op imports it.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import random
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from lamflow.ops.dp import NNODES_ENV, NPROC_ENV

POOL_ENV = "LAMFLOW_SLOTS_DIR"
KEY_ENV = "LAMFLOW_STEP_KEY"
NEEDS_ENV = "LAMFLOW_STEP_NEEDS"
MACHINE_FILE = "machine.json"
GRANTED_DIR = "granted"
UNITS_DIR = "units"
LOCK_FILE = "lock"
POLL_S = 0.05
THREAD_VARIABLES = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "DP_INTRA_OP_PARALLELISM_THREADS")
INTER_OP_VARIABLE = "DP_INTER_OP_PARALLELISM_THREADS"


@dataclass(frozen=True)
class Needs:
    """What one step asks for: whole GPUs and cores."""

    gpus: int = 0
    cores: int = 1

    def __str__(self) -> str:
        return f"gpus={self.gpus},cores={self.cores}"

    @classmethod
    def parse(cls, text: str) -> Needs:
        values: dict[str, int] = {}
        for part in text.split(","):
            name, _, number = part.partition("=")
            if name.strip() not in ("gpus", "cores") or not number.strip().isdigit():
                raise ValueError(f"{NEEDS_ENV}={text!r}: expected gpus=N,cores=M")
            values[name.strip()] = int(number)
        return cls(**values)


@dataclass(frozen=True)
class Machine:
    """The units a run may hand out: GPU names as ``CUDA_VISIBLE_DEVICES`` spells them, and core ids."""

    gpus: tuple[str, ...]
    cores: tuple[int, ...]

    def fits(self, needs: Needs) -> bool:
        return needs.gpus <= len(self.gpus) and needs.cores <= len(self.cores)


def _unit_names(machine: Machine) -> list[str]:
    return [f"gpu-{i}" for i in range(len(machine.gpus))] + [f"core-{i}" for i in range(len(machine.cores))]


def lay_out(pool: Path, machine: Machine) -> None:
    """Create (or reuse) a run's pool for ``machine``: one lock file per unit."""
    (pool / UNITS_DIR).mkdir(parents=True, exist_ok=True)
    (pool / GRANTED_DIR).mkdir(exist_ok=True)
    (pool / LOCK_FILE).touch()
    for name in _unit_names(machine):
        (pool / UNITS_DIR / name).touch()
    text = json.dumps({"gpus": list(machine.gpus), "cores": list(machine.cores)}, indent=2) + "\n"
    (pool / MACHINE_FILE).write_text(text)


def read_machine(pool: Path) -> Machine:
    data = json.loads((pool / MACHINE_FILE).read_text())
    return Machine(gpus=tuple(str(g) for g in data["gpus"]), cores=tuple(int(c) for c in data["cores"]))


@dataclass
class Grant:
    """Units one step holds: their lock files stay open (and locked) until :meth:`release`."""

    key: str
    gpus: tuple[str, ...]
    cores: tuple[int, ...]
    waited_s: float
    files: list[IO[bytes]]
    record: Path
    granted_at: float = 0.0  # wall clock (time.time()) when the units were taken

    def release(self) -> None:
        for f in self.files:
            f.close()  # closing the descriptor drops its flock
        self.files = []


def _try_lock(path: Path) -> IO[bytes] | None:
    f = open(path, "rb")  # noqa: SIM115 - held open for as long as the step runs
    try:
        fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        f.close()
        return None
    return f


def try_acquire(
    pool: Path, machine: Machine, needs: Needs
) -> tuple[list[int], list[int], list[IO[bytes]]] | None:
    """One all-or-nothing attempt: (gpu indices, core indices, held lock files), or None if not free now."""
    with open(pool / LOCK_FILE, "rb") as guard:
        fcntl.flock(guard, fcntl.LOCK_EX)  # one taker at a time; dropped when the with ends
        held: list[IO[bytes]] = []
        chosen: dict[str, list[int]] = {"gpu": [], "core": []}
        for kind, count, total in (
            ("gpu", needs.gpus, len(machine.gpus)),
            ("core", needs.cores, len(machine.cores)),
        ):
            for index in range(total):
                if len(chosen[kind]) == count:
                    break
                f = _try_lock(pool / UNITS_DIR / f"{kind}-{index}")
                if f is not None:
                    held.append(f)
                    chosen[kind].append(index)
            if len(chosen[kind]) < count:
                for f in held:
                    f.close()
                return None
        return chosen["gpu"], chosen["core"], held


def acquire(pool: Path, key: str, needs: Needs, *, poll_s: float = POLL_S) -> Grant:
    """Wait until ``needs`` fit among the free units of the pool, take them, and record the grant."""
    machine = read_machine(pool)
    if not machine.fits(needs):
        raise ValueError(
            f"step {key} needs {needs.gpus} GPU(s) and {needs.cores} core(s); this run's machine has "
            f"{len(machine.gpus)} GPU(s) and {len(machine.cores)} core(s)"
        )
    started = time.monotonic()
    while True:
        got = try_acquire(pool, machine, needs)
        if got is not None:
            break
        time.sleep(poll_s * (1.0 + random.random()))  # jitter: waiting steps do not poll in step
    gpu_ix, core_ix, files = got
    grant = Grant(
        key=key,
        gpus=tuple(machine.gpus[i] for i in gpu_ix),
        cores=tuple(machine.cores[i] for i in core_ix),
        waited_s=round(time.monotonic() - started, 3),
        files=files,
        record=pool / GRANTED_DIR / f"{key}.json",
        granted_at=time.time(),
    )
    write_record(grant, ended=False)
    return grant


def write_record(grant: Grant, *, ended: bool) -> None:
    data: dict[str, Any] = {
        "key": grant.key,
        "gpus": list(grant.gpus),
        "cores": list(grant.cores),
        "waited_s": grant.waited_s,
        "pid": os.getpid(),
        "granted_at": grant.granted_at,
        "released_at": time.time() if ended else None,
        "ended": ended,
    }
    tmp = grant.record.with_name(f".{grant.record.name}.{os.getpid()}")
    tmp.write_text(json.dumps(data) + "\n")
    tmp.replace(grant.record)


def read_grant(pool: Path, key: str) -> dict[str, Any] | None:
    """What step ``key`` was granted (None: it never got units, or its record is being replaced)."""
    try:
        return json.loads((pool / GRANTED_DIR / f"{key}.json").read_text())
    except (OSError, ValueError):
        return None


def read_grants(pool: Path) -> dict[str, dict[str, Any]]:
    """Step key -> what it was granted, for every step of the run that got units so far."""
    found: dict[str, dict[str, Any]] = {}
    folder = pool / GRANTED_DIR
    if not folder.is_dir():
        return found
    for path in sorted(folder.glob("*.json")):
        try:
            data = json.loads(path.read_text())
        except (OSError, ValueError):
            continue  # being replaced
        found[str(data.get("key", path.stem))] = data
    return found


def holding_now(data: dict[str, Any]) -> bool:
    """Whether a grant's step still runs (its process is alive and has not released)."""
    if data.get("ended"):
        return False
    try:
        os.kill(int(data["pid"]), 0)
    except (ProcessLookupError, KeyError, ValueError, TypeError):
        return False
    except PermissionError:
        return True
    return True


def _apply(grant: Grant) -> dict[str, str | None]:
    """Set this process up for the grant; returns the environment values it replaced."""
    values: dict[str, str] = {name: str(len(grant.cores)) for name in THREAD_VARIABLES}
    values[INTER_OP_VARIABLE] = "1"
    values["CUDA_VISIBLE_DEVICES"] = ",".join(grant.gpus)
    nodes = os.environ.get(NNODES_ENV, "").strip()
    per_node = len(grant.gpus) // int(nodes) if nodes.isdigit() and int(nodes) > 1 else len(grant.gpus)
    values[NPROC_ENV] = str(max(1, per_node))  # a step on several local "nodes" splits its GPUs between them
    before = {name: os.environ.get(name) for name in values}
    os.environ.update(values)
    torch = sys.modules.get("torch")
    if torch is not None:
        torch.set_num_threads(len(grant.cores))
    return before


@contextlib.contextmanager
def held() -> Iterator[Grant | None]:
    """Hold this step's slot for the length of the ``with`` (nothing outside a local run)."""
    pool, key, text = (os.environ.get(name, "").strip() for name in (POOL_ENV, KEY_ENV, NEEDS_ENV))
    if not (pool and key and text):
        yield None
        return
    needs = Needs.parse(text)
    threads = sys.modules["torch"].get_num_threads() if "torch" in sys.modules else None
    grant = acquire(Path(pool), key, needs)
    before = _apply(grant)
    try:
        yield grant
    finally:
        for name, value in before.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
        if threads is not None and "torch" in sys.modules:
            sys.modules["torch"].set_num_threads(threads)
        with contextlib.suppress(OSError):
            write_record(grant, ended=True)
        grant.release()
