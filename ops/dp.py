"""The one seam to DeePMD-kit: pure builders of ``dp --pt ...`` command lines and :func:`run_dp`.

Builders return argument lists (no I/O) so they can be table-tested; :func:`run_dp` is the only place a
``dp`` process is started. The ``dp`` executable is the one beside the running interpreter when present
(so an un-activated virtual environment still works), else ``dp`` from PATH; ``LAMFLOW_DP`` overrides it
with a program path or a command line (e.g. ``python /path/to/fake_dp.py`` for the fast test tier).
"""

from __future__ import annotations

import os
import shlex
import shutil
import subprocess
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

RANDOM_BRANCH = "RANDOM"


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


def train_command(
    input_json: str | Path,
    *,
    finetune: str | Path | None = None,
    model_branch: str | None = None,
    use_pretrain_script: bool = False,
    init_frz_model: str | Path | None = None,
    restart: str | Path | None = None,
    skip_neighbor_stat: bool = False,
) -> list[str]:
    """``dp --pt train``. ``finetune`` must be a training checkpoint (.pt), not a frozen .pth model."""
    starts = [x for x in (finetune, init_frz_model, restart) if x is not None]
    if len(starts) > 1:
        raise ValueError("finetune, init_frz_model and restart are mutually exclusive")
    if model_branch is not None and finetune is None:
        raise ValueError("model_branch only applies when fine-tuning")
    if use_pretrain_script and finetune is None and init_frz_model is None:
        raise ValueError("use_pretrain_script needs finetune or init_frz_model")
    if finetune is not None and str(finetune).endswith(".pth"):
        raise ValueError(f"cannot fine-tune from frozen model {finetune}: --finetune needs a .pt checkpoint")
    argv = [*_dp("train"), str(input_json)]
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


@dataclass(frozen=True)
class DpRun:
    argv: list[str]
    returncode: int
    log_file: Path


def run_dp(argv: Sequence[str], *, cwd: str | Path, log_file: str | Path, echo: bool = True) -> DpRun:
    """Run one ``dp`` command in ``cwd``, appending its output to ``log_file`` (and echoing it).

    Raises :class:`DpError` with the tail of the output when it exits non-zero.
    """
    cwd = Path(cwd)
    log_path = Path(log_file)
    if not log_path.is_absolute():
        log_path = cwd / log_path
    log_path.parent.mkdir(parents=True, exist_ok=True)
    tail: list[str] = []
    with log_path.open("a", encoding="utf-8") as log:
        log.write(f"$ {' '.join(argv)}\n")
        log.flush()
        if echo:
            sys.stdout.write(f"$ {' '.join(argv)}\n")
            sys.stdout.flush()
        proc = subprocess.Popen(
            list(argv),
            cwd=cwd,
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
            del tail[:-40]
        returncode = proc.wait()
    if returncode != 0:
        raise DpError(argv, returncode, "".join(tail), log_path)
    return DpRun(list(argv), returncode, log_path)
