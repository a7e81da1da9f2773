"""What several step ops share: the work directory, running ``dp`` as a step, writing JSON, and the
output of every op that writes a frozen model."""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from dflow.python import FatalError

from lamflow.ops.dp import DpError, run_dp
from lamflow.ops.runtime import files
from lamflow.ops.runtime.contract import OpModel


class ModelOutput(OpModel):
    """A frozen model (TorchScript ``model.pth``) and the log of the command that wrote it."""

    model: Path
    log: Path


def run_dp_step(argv: list[str], cwd: Path, log_file: str) -> None:
    """:func:`run_dp` for a step: a failing ``dp`` becomes dflow's FatalError (the step fails, no retry)."""
    try:
        run_dp(argv, cwd=cwd, log_file=log_file)
    except DpError as exc:
        raise FatalError(str(exc)) from exc


def work_dir(name: str = files.WORK_DIR) -> Path:
    """A fresh directory under the step's current directory, returned as an absolute path."""
    path = Path(name).resolve()
    path.mkdir(parents=True, exist_ok=True)
    return path


def write_json(path: Path, data: Mapping[str, Any]) -> Path:
    path.write_text(json.dumps(data, indent=2, sort_keys=False) + "\n")
    return path
