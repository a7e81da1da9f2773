"""The one seam to DeePMD-kit: pure builders of ``dp --pt ...`` command lines and :func:`run_dp`.

Builders return argument lists (no I/O) so they can be table-tested; :func:`run_dp` is the only place
``dp`` runs: as a process, or — inside a step worker (:mod:`lamflow.ops.runtime.worker`) — in-process, through
DeePMD-kit's entry point ``deepmd.main.main`` with the same argument list (a Python ``LAMFLOW_DP`` such as
the fake runs with ``runpy``), its output captured the same way.

The ``dp`` executable is the one beside the running interpreter when present (so an un-activated virtual
environment still works), else ``dp`` from PATH; ``LAMFLOW_DP`` overrides it with a program path or a
command line (e.g. ``python /path/to/fake_dp.py`` for the fast test tier).
"""

from __future__ import annotations

import ast
import importlib
import importlib.util
import io
import logging
import os
import re
import runpy
import shlex
import shutil
import signal
import subprocess
import sys
import threading
import traceback
import types
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

RANDOM_BRANCH = "RANDOM"
IN_WORKER = False  # set by lamflow.ops.runtime.worker: run dp in-process where the program allows it
FORKED_STEP = False  # set by the step launcher in each step it forks: the real dp runs in a fork of the
# step, not a new program, when the launcher had imported DeePMD-kit (DEEPMD_MODULES) before it forked it
# what a step launcher (CPU-only machines) and a step worker import once, so that the steps they start
# run DeePMD-kit without importing torch and DeePMD-kit again (about 6 s of CPU each on this project's VMs)
DEEPMD_MODULES = (
    "deepmd.main",
    "deepmd.pt.entrypoints.main",
    "deepmd.entrypoints.main",
    "deepmd.pt.infer.deep_eval",
)
# DeePMD-kit's model deviation: NumPy only (no torch, so no CUDA: safe to import before a fork on any
# machine), and ~1.7 s of CPU to import (deepmd.dpmodel, ml_dtypes)
MODEL_DEVI_MODULE = "deepmd.infer.model_devi"
TAIL_LINES = 40
TAIL_BYTES = 1 << 16
FOLLOW_S = 0.05
# set by a step worker while it serves a step: told the log file (and its size) before each in-process dp
# call, so that the step can show the file's last lines if the worker dies during the call
announce_log: Callable[[Path, int], None] | None = None


class DpError(RuntimeError):
    """A ``dp`` command exited non-zero; ``tail`` holds the last lines it printed."""

    def __init__(self, argv: Sequence[str], returncode: int, tail: str, log_file: Path | None) -> None:
        self.argv = list(argv)
        self.returncode = returncode
        self.tail = tail
        self.log_file = log_file
        where = f" (log: {log_file})" if log_file else ""
        last = tail.strip().splitlines()[-1] if tail.strip() else "no output"
        super().__init__(f"`{' '.join(self.argv)}` exited with {returncode}{where}: {last}")


def real_dp() -> bool:
    """Whether ``dp`` is DeePMD-kit itself, not a ``LAMFLOW_DP`` override (the tests' fake)."""
    return not os.environ.get("LAMFLOW_DP", "").strip()


def import_deepmd(names: Sequence[str] = DEEPMD_MODULES) -> None:
    """Import DeePMD-kit's modules ``names`` ahead of their use. DeePMD-kit is an optional dependency
    (``lamflow[deepmd]``): a module that is not installed is skipped, and the steps that need it say so."""
    for name in names:
        try:
            importlib.import_module(name)
        except ImportError:
            pass


def dp_program() -> list[str]:
    """The ``dp`` program to run, as the leading words of a command line."""
    override = os.environ.get("LAMFLOW_DP", "").strip()
    if override:
        return shlex.split(override)
    beside = Path(sys.executable).with_name("dp")
    if beside.exists():
        return [str(beside)]
    return [shutil.which("dp") or "dp"]


def _dp(sub: str) -> list[str]:
    return [*dp_program(), "--pt", sub]


CPU_DDP_MODULE = "lamflow.ops.training.cpu_ddp"  # dp for data-parallel training without GPUs
NVIDIA_GPUS = Path("/proc/driver/nvidia/gpus")


def visible_gpus(environ: Mapping[str, str] | None = None) -> list[str]:
    """The GPUs this process may use, without importing torch: ``CUDA_VISIBLE_DEVICES`` where it is set
    (CUDA stops at the first invalid entry; ``-1`` is the usual way to say "none"), else the NVIDIA
    driver's list (``/proc/driver/nvidia/gpus``), numbered."""
    env = os.environ if environ is None else environ
    text = env.get("CUDA_VISIBLE_DEVICES")
    if text is not None:
        names = [part.strip() for part in text.split(",") if part.strip()]
        return names[: next((i for i, n in enumerate(names) if n.startswith("-")), len(names))]
    count = len(list(NVIDIA_GPUS.iterdir())) if NVIDIA_GPUS.is_dir() else 0
    return [str(i) for i in range(count)]


def _train_program(topo: Topology) -> list[str]:
    """``dp``; for more than one training process on a machine without GPUs, DeePMD-kit's entry point
    through :mod:`lamflow.ops.training.cpu_ddp` (DeePMD-kit 3.2 sets data parallelism up for CUDA only)."""
    if topo.world_size > 1 and real_dp() and not visible_gpus():
        return [sys.executable, "-m", CPU_DDP_MODULE]
    return dp_program()


NPROC_ENV = "LAMFLOW_NPROC_PER_NODE"  # processes (GPUs) per node: the Argo renderer, the local slots
NNODES_ENV = "LAMFLOW_NNODES"  # nodes: `resources.<class>.nodes`, set by the local engine
RDZV_ENV = "LAMFLOW_RDZV_ENDPOINT"  # host:port of the c10d rendezvous of a local multi-node step
RDZV_ID_ENV = "LAMFLOW_RDZV_ID"
# what the Kubeflow training operator sets in a PyTorchJob's pods (elasticPolicy, c10d rendezvous)
OPERATOR_NNODES, OPERATOR_NPROC = "PET_NNODES", "PET_NPROC_PER_NODE"
OPERATOR_RDZV, OPERATOR_RDZV_ID = "PET_RDZV_ENDPOINT", "PET_RDZV_ID"


@dataclass(frozen=True)
class Topology:
    """How many nodes and processes per node one ``dp train`` runs on, and where they meet."""

    nnodes: int = 1
    nproc_per_node: int = 1
    rdzv_endpoint: str | None = None  # host:port of the c10d rendezvous (more than one node only)
    rdzv_id: str = "lamflow"

    @property
    def world_size(self) -> int:
        return self.nnodes * self.nproc_per_node


def _whole(name: str, text: str) -> int:
    if not text.isdigit() or int(text) < 1:
        raise ValueError(f"{name}={text!r}: expected a positive whole number")
    return int(text)


def _whole_range(text: str) -> int:
    """``min:max`` of the operator's ``PET_NNODES``: lamflow's jobs set both to the spec's nodes."""
    low, _, high = text.partition(":")
    if not (low.isdigit() and high.isdigit()) or int(high) < 1:
        raise ValueError(f"{OPERATOR_NNODES}={text!r}: expected a positive whole number or min:max")
    return int(high)


def _master(env: Mapping[str, str]) -> str | None:
    """A job without ``elasticPolicy`` names its master instead of a rendezvous endpoint."""
    host, port = env.get("PET_MASTER_ADDR", "").strip(), env.get("PET_MASTER_PORT", "").strip()
    return f"{host}:{port}" if host and port else None


def process_topology(environ: Mapping[str, str] | None = None) -> Topology:
    """The topology of this training process: the training operator's ``PET_*`` variables in a pod of a
    PyTorchJob (``PET_NNODES`` as ``min:max``, which lamflow sets equal), lamflow's own otherwise."""
    env = os.environ if environ is None else environ
    if env.get(OPERATOR_NNODES, "").strip():
        nodes = env[OPERATOR_NNODES].strip()
        return Topology(
            nnodes=_whole(OPERATOR_NNODES, nodes) if ":" not in nodes else _whole_range(nodes),
            nproc_per_node=_whole(OPERATOR_NPROC, env.get(OPERATOR_NPROC, "1").strip() or "1"),
            rdzv_endpoint=env.get(OPERATOR_RDZV, "").strip() or _master(env),
            rdzv_id=env.get(OPERATOR_RDZV_ID, "").strip() or "lamflow",
        )
    return Topology(
        nnodes=_whole(NNODES_ENV, env.get(NNODES_ENV, "").strip() or "1"),
        nproc_per_node=_whole(NPROC_ENV, env.get(NPROC_ENV, "").strip() or "1"),
        rdzv_endpoint=env.get(RDZV_ENV, "").strip() or None,
        rdzv_id=env.get(RDZV_ID_ENV, "").strip() or "lamflow",
    )


def launcher(topo: Topology | None = None) -> list[str]:
    """What training runs under (DeePMD-kit's documented data-parallel launch): nothing for one process;
    ``torchrun --nproc_per_node=N --no-python`` for N GPUs of one node; with more than one node, also
    ``--nnodes``, the c10d rendezvous endpoint and id — in a pod of a PyTorchJob as on the local engine's
    nodes on one machine (ops/training/distributed.py)."""
    topo = process_topology() if topo is None else topo
    if topo.world_size == 1:
        return []
    beside = Path(sys.executable).with_name("torchrun")  # the environment's own, as for dp
    torchrun = str(beside) if beside.exists() else shutil.which("torchrun") or "torchrun"
    argv = [torchrun, f"--nproc_per_node={topo.nproc_per_node}"]
    if topo.nnodes > 1:
        if not topo.rdzv_endpoint:
            raise ValueError(f"{topo.nnodes} nodes, no rendezvous endpoint ({OPERATOR_RDZV} or {RDZV_ENV})")
        argv += [
            f"--nnodes={topo.nnodes}",
            "--rdzv_backend=c10d",
            f"--rdzv_endpoint={topo.rdzv_endpoint}",
            f"--rdzv_id={topo.rdzv_id}",
        ]
    return [*argv, "--no-python"]


def train_command(
    input_json: str | Path,
    *,
    finetune: str | Path | None = None,
    model_branch: str | None = None,
    use_pretrain_script: bool = False,
    init_frz_model: str | Path | None = None,
    restart: str | Path | None = None,
    skip_neighbor_stat: bool = False,
    topology: Topology | None = None,
) -> list[str]:
    """``dp --pt train`` under :func:`launcher` of ``topology`` (default: this process's). ``finetune`` must
    be a training checkpoint (.pt), not a frozen .pth model."""
    starts = [x for x in (finetune, init_frz_model, restart) if x is not None]
    if len(starts) > 1:
        raise ValueError("finetune, init_frz_model and restart are mutually exclusive")
    if model_branch is not None and finetune is None:
        raise ValueError("model_branch only applies when fine-tuning")
    if use_pretrain_script and finetune is None and init_frz_model is None:
        raise ValueError("use_pretrain_script needs finetune or init_frz_model")
    if finetune is not None and str(finetune).endswith(".pth"):
        raise ValueError(f"cannot fine-tune from frozen model {finetune}: --finetune needs a .pt checkpoint")
    topo = process_topology() if topology is None else topology
    argv = [*launcher(topo), *_train_program(topo), "--pt", "train", str(input_json)]
    if finetune is not None:
        argv += ["--finetune", str(finetune)]
        if model_branch is not None:
            argv += ["--model-branch", model_branch]
    if init_frz_model is not None:
        argv += ["--init-frz-model", str(init_frz_model)]
    if restart is not None:
        argv += ["--restart", str(restart)]
    if use_pretrain_script:
        argv.append("--use-pretrain-script")
    if skip_neighbor_stat:
        argv.append("--skip-neighbor-stat")
    return argv


def freeze_command(
    output: str | Path, *, checkpoint_dir: str | Path = ".", head: str | None = None
) -> list[str]:
    """``dp --pt freeze``; ``head`` is required for multi-task checkpoints."""
    argv = [*_dp("freeze"), "-c", str(checkpoint_dir), "-o", str(output)]
    if head is not None:
        argv += ["--head", head]
    return argv


def test_command(
    model: str | Path,
    systems: str | Path,
    *,
    numb_test: int = 0,
    head: str | None = None,
    detail_prefix: str | None = None,
) -> list[str]:
    """``dp --pt test`` on every system under ``systems`` (0 frames = all)."""
    if numb_test < 0:
        raise ValueError("numb_test must be >= 0")
    argv = [*_dp("test"), "-m", str(model), "-s", str(systems), "-n", str(numb_test)]
    if detail_prefix is not None:
        argv += ["-d", detail_prefix]
    if head is not None:
        argv += ["--head", head]
    return argv


def change_bias_command(
    model: str | Path,
    systems: str | Path,
    *,
    output: str | Path,
    mode: str = "change",
    numb_batch: int = 0,
    model_branch: str | None = None,
) -> list[str]:
    """``dp --pt change-bias``: re-fit the per-element energy bias on ``systems`` (zero-shot protocol)."""
    if mode not in ("change", "set"):
        raise ValueError(f"mode must be 'change' or 'set', not {mode!r}")
    argv = [
        *_dp("change-bias"),
        str(model),
        "-s",
        str(systems),
        "-m",
        mode,
        "-n",
        str(numb_batch),
        "-o",
        str(output),
    ]
    if model_branch is not None:
        argv += ["--model-branch", model_branch]
    return argv


def compress_command(
    model: str | Path,
    output: str | Path,
    *,
    step: float = 0.01,
    extrapolate: int = 5,
    frequency: int = -1,
) -> list[str]:
    """``dp --pt compress``: tabulate the embedding nets of a frozen model (fifth-order polynomials with
    stride ``step`` up to ``extrapolate`` times the data range; ``frequency`` -1 = no overflow check)."""
    if step <= 0 or extrapolate <= 0:
        raise ValueError("step and extrapolate must be positive")
    return [
        *_dp("compress"),
        "-i",
        str(model),
        "-o",
        str(output),
        "-s",
        repr(float(step)),
        "-e",
        str(int(extrapolate)),
        "-f",
        str(frequency),
    ]


def show_command(model: str | Path, *attributes: str) -> list[str]:
    """``dp --pt show MODEL ATTR...`` (type-map, descriptor, fitting-net, size, ...)."""
    if not attributes:
        raise ValueError("name at least one attribute to show")
    return [*_dp("show"), str(model), *attributes]


_TYPE_MAP_LINE = re.compile(r"The type_map is (\[.*\])")


def parse_type_map(show_output: str) -> list[str]:
    """The type map ``dp --pt show MODEL type-map`` printed."""
    match = _TYPE_MAP_LINE.search(show_output)
    if match is None:
        raise ValueError("dp show printed no type_map")
    value = ast.literal_eval(match.group(1))
    if not isinstance(value, list) or not all(isinstance(x, str) for x in value):
        raise ValueError(f"dp show printed an unreadable type_map: {match.group(1)}")
    return value


def model_type_map(model: str | Path) -> list[str]:
    """A frozen model's element list, as ``dp --pt show`` prints it. Raises :class:`DpError`/ValueError."""
    argv = show_command(model, "type-map")
    proc = subprocess.run(argv, capture_output=True, text=True, encoding="utf-8", errors="replace")
    output = proc.stdout + proc.stderr
    if proc.returncode != 0:
        raise DpError(argv, proc.returncode, output, None)
    return parse_type_map(output)


# --- in-process evaluation (model deviation, MD, labels): DeePMD-kit's DeepPot and ASE calculator ---

_SCRIPT_MODULES: dict[str, types.ModuleType] = {}


def inference_module() -> Any:
    """Where ``DeepPot`` (batched evaluation) and ``DP`` (the ASE calculator) come from: DeePMD-kit, or the
    Python script ``LAMFLOW_DP`` names (the fast tier's fake, which defines both), so that every use of
    DeePMD-kit — command or in-process — goes through this module and the same override."""
    program = dp_program()
    if (
        os.environ.get("LAMFLOW_DP", "").strip()
        and len(program) == 2
        and program[1].endswith(".py")
        and Path(program[0]).name.startswith("python")
    ):
        script = str(Path(program[1]).resolve())
        if script not in _SCRIPT_MODULES:
            spec = importlib.util.spec_from_file_location("lamflow_dp_override", script)
            if spec is None or spec.loader is None:
                raise ImportError(f"LAMFLOW_DP: cannot load {script}")
            module = importlib.util.module_from_spec(spec)
            spec.loader.exec_module(module)
            _SCRIPT_MODULES[script] = module
        return _SCRIPT_MODULES[script]
    from deepmd.calculator import DP
    from deepmd.infer import DeepPot

    return types.SimpleNamespace(DeepPot=DeepPot, DP=DP)


def deep_potential(model: str | Path) -> Any:
    """A frozen model loaded for batched evaluation: ``eval(coords, cells, atom_types)`` -> (energy,
    force, virial); ``get_type_map()``."""
    return inference_module().DeepPot(str(model))


def force_deviation(forces: Any) -> Any:
    """Per frame, the maximum over atoms of the norm of the standard deviation over models of the atomic
    force (``max_devi_f`` of ``dp model-devi``), computed by DeePMD-kit's own
    ``deepmd.infer.model_devi.calc_model_devi_f``. ``forces``: (n_models, n_frames, n_atoms, 3)."""
    import numpy as np
    from deepmd.infer.model_devi import calc_model_devi_f  # MODEL_DEVI_MODULE

    stacked = np.asarray(forces, dtype=float)
    if stacked.ndim != 4 or stacked.shape[-1] != 3:
        raise ValueError(f"forces of shape (models, frames, atoms, 3) expected, got {stacked.shape}")
    return calc_model_devi_f(stacked)[0]


def ase_calculator(model: str | Path) -> Any:
    """DeePMD-kit's ASE calculator on a frozen model (energy, forces, stress)."""
    return inference_module().DP(model=str(model))


@dataclass(frozen=True)
class DpRun:
    argv: list[str]
    returncode: int
    log_file: Path


def in_process_entry(argv: Sequence[str]) -> Callable[[], None] | None:
    """How to run ``argv`` inside this process, or None when it must be a process of its own. In-process:
    in a step worker, the real ``dp`` or a Python ``LAMFLOW_DP`` script; in a step the launcher forked
    after importing DeePMD-kit, the real ``dp``, in a fork of the step (:func:`_run_forked`; a fake keeps a
    process of its own there, as the fast tier's tests of processes expect)."""
    program = dp_program()
    if list(argv[: len(program)]) != program:
        return None
    args = list(argv[len(program) :])
    real = real_dp()
    warm = FORKED_STEP and real and "deepmd.main" in sys.modules
    if not (IN_WORKER or warm):
        return None
    if real:

        def deepmd_main() -> None:
            from deepmd.main import main

            main(args)

        return deepmd_main
    if len(program) == 2 and program[1].endswith(".py") and Path(program[0]).name.startswith("python"):

        def python_script() -> None:
            sys.argv[:] = [program[1], *args]
            runpy.run_path(program[1], run_name="__main__")

        return python_script
    return None


def exit_status(exc: SystemExit) -> int:
    """What a process exiting with ``exc`` reports (``sys.exit("text")`` prints the text, exits 1)."""
    if exc.code is None:
        return 0
    if isinstance(exc.code, int):
        return exc.code
    print(exc.code, file=sys.stderr)
    return 1


def _call(entry: Callable[[], None]) -> int:
    """Run ``entry`` as a program: its exit status, with a traceback printed for an exception."""
    try:
        entry()
        return 0
    except SystemExit as exc:
        return exit_status(exc)
    except KeyboardInterrupt:
        raise
    except Exception:
        traceback.print_exc()
        return 1


class _StreamFd(io.FileIO):
    """fd 1 or 2 of a worker, which point at a different pipe or file in every step: never seekable, so
    that a step's ``sys.stdout.reconfigure(...)`` or ``TextIOWrapper(sys.stdout.buffer)`` cannot trip over
    a position cached from the file the descriptor pointed at before."""

    def seekable(self) -> bool:
        return False


def fd_stream(fd: int) -> io.TextIOWrapper:
    raw = _StreamFd(fd, "w", closefd=False)
    return io.TextIOWrapper(io.BufferedWriter(raw), encoding="utf-8", errors="replace", line_buffering=True)


def flush_std() -> None:
    """Flush sys.stdout and sys.stderr, whatever they are now (closed or broken ones are skipped)."""
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):
            pass


@contextmanager
def output_to(fd: int) -> Iterator[int]:
    """Inside the block fd 1 and 2 write to ``fd`` (which the caller may close once inside), and
    ``sys.stdout``/``sys.stderr`` are streams on them, whatever they were (a test's capture, ...). Yields
    a duplicate of the previous fd 1, valid until the block ends; everything is put back afterwards."""
    flush_std()
    saved = os.dup(1), os.dup(2)
    os.dup2(fd, 1)
    os.dup2(fd, 2)
    streams = sys.stdout, sys.stderr
    sys.stdout, sys.stderr = fd_stream(1), fd_stream(2)
    try:
        yield saved[0]
    finally:
        flush_std()
        sys.stdout, sys.stderr = streams
        os.dup2(saved[0], 1)
        os.dup2(saved[1], 2)
        for fd_ in saved:
            os.close(fd_)


@contextmanager
def _following(log_path: Path, start: int, echo_fd: int, echo: bool, tail: list[str]) -> Iterator[None]:
    """While the block runs, a thread follows ``log_path`` from ``start``: echoes what is written to it to
    ``echo_fd`` (when ``echo``) and keeps its tail."""
    done = threading.Event()
    seen = bytearray()

    def follow() -> None:
        with log_path.open("rb") as source:
            source.seek(start)
            while True:
                finished = done.is_set()
                chunk = source.read()
                if chunk:
                    if echo:
                        os.write(echo_fd, chunk)
                    seen.extend(chunk)
                    del seen[: max(0, len(seen) - TAIL_BYTES)]
                if finished:
                    return
                done.wait(FOLLOW_S)

    follower = threading.Thread(target=follow, daemon=True)
    follower.start()
    try:
        yield
    finally:
        done.set()
        follower.join()
        tail.extend(seen.decode("utf-8", errors="replace").splitlines(keepends=True)[-TAIL_LINES:])


def _open_log(log_path: Path) -> tuple[int, int]:
    """A descriptor appending to ``log_path``, and the log's size before it (where the output starts)."""
    log_fd = os.open(log_path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    start = os.fstat(log_fd).st_size
    if announce_log is not None:
        announce_log(log_path, start)
    return log_fd, start


def _run_in_process(entry: Callable[[], None], log_path: Path, echo: bool, tail: list[str]) -> int:
    """Run ``entry`` with fd 1/2 appending to ``log_path``; a thread follows the file to echo it to the
    real stdout (when ``echo``) and keep its tail. Writing the log directly, not through a pipe, keeps
    every line a crash would otherwise lose with the process."""
    log_fd, start = _open_log(log_path)
    with output_to(log_fd) as stdout_fd:
        os.close(log_fd)
        with _following(log_path, start, stdout_fd, echo, tail):
            try:
                return _call(entry)
            finally:
                flush_std()


def _run_forked(entry: Callable[[], None], cwd: Path, log_path: Path, echo: bool, tail: list[str]) -> int:
    """Run ``entry`` in a child forked from this step (which the step launcher forked after importing
    DeePMD-kit): a process of its own for each ``dp`` command, as the program would be — its own state
    (DeePMD-kit keeps module state between a training and a freeze), pid, signals and exit status; it dies
    with the step — without importing torch and DeePMD-kit again. Its fd 1/2 append to ``log_path``; the
    step follows the file to echo it and keep its tail. Returns the exit status, or minus the signal."""
    log_fd, start = _open_log(log_path)
    flush_std()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child; its work and exit status are checked by the slow tier
        code = 1
        try:
            _die_with_parent()
            os.chdir(cwd)
            os.dup2(log_fd, 1)
            os.dup2(log_fd, 2)
            os.close(log_fd)
            sys.stdout, sys.stderr = fd_stream(1), fd_stream(2)
            code = _call(entry)
        except KeyboardInterrupt:  # die of SIGINT, as the program would
            flush_std()
            signal.signal(signal.SIGINT, signal.SIG_DFL)
            os.kill(os.getpid(), signal.SIGINT)
        except BaseException:
            traceback.print_exc()
        finally:
            flush_std()
            logging.shutdown()
            os._exit(code)  # never the step's own exit handlers: they belong to the step
    os.close(log_fd)
    with _following(log_path, start, 1, echo, tail):
        _, status = os.waitpid(pid, 0)
    return os.waitstatus_to_exitcode(status)


def _die_with_parent() -> None:  # pragma: no cover - runs in the child, after its fork
    """Linux: SIGTERM to this ``dp`` when the process that started it dies (``PR_SET_PDEATHSIG``). A step
    ended by a signal it cannot pass on (its launcher stopping, a SIGKILL) then never leaves a ``dp`` training
    on its own, re-parented to init and out of reach of ``lamflow stop``."""
    import ctypes

    try:
        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)  # 1: PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass


def _run_process(argv: Sequence[str], cwd: Path, log_path: Path, echo: bool, tail: list[str]) -> int:
    with log_path.open("a", encoding="utf-8") as log:
        proc = subprocess.Popen(
            list(argv),
            cwd=cwd,
            preexec_fn=_die_with_parent if sys.platform.startswith("linux") else None,
            # unbuffered: a piped Python child would otherwise emit stdout after stderr, out of order
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            encoding="utf-8",
            errors="replace",
        )
        assert proc.stdout is not None
        for line in proc.stdout:
            log.write(line)
            if echo:
                sys.stdout.write(line)
            tail.append(line)
            del tail[:-TAIL_LINES]
        return proc.wait()


def run_dp(argv: Sequence[str], *, cwd: str | Path, log_file: str | Path, echo: bool = True) -> DpRun:
    """Run one ``dp`` command in ``cwd``, appending its output to ``log_file`` (and echoing it).

    In a step worker the command runs in-process (see :func:`in_process_entry`), in ``cwd``, with the
    same argument list. Raises :class:`DpError` with the tail of the output when it exits non-zero.
    """
    cwd = Path(cwd)
    log_path = Path(log_file)
    if not log_path.is_absolute():
        log_path = cwd / log_path
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with log_path.open("a", encoding="utf-8") as log:
        log.write(f"$ {' '.join(argv)}\n")
    if echo:
        sys.stdout.write(f"$ {' '.join(argv)}\n")
        sys.stdout.flush()
    tail: list[str] = []
    entry = in_process_entry(argv)
    if entry is None:
        returncode = _run_process(argv, cwd, log_path, echo, tail)
    elif not IN_WORKER:  # a step the launcher forked with DeePMD-kit imported: a fork per command
        returncode = _run_forked(entry, cwd, log_path, echo, tail)
    else:
        here = os.getcwd()
        os.chdir(cwd)
        try:
            returncode = _run_in_process(entry, log_path, echo, tail)
        finally:
            os.chdir(here)
    if returncode != 0:
        raise DpError(argv, returncode, "".join(tail), log_path)
    return DpRun(list(argv), returncode, log_path)
