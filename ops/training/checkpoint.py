"""DeePMD-kit training checkpoints (``.pt``) without running ``dp``: reading one's model parameters and
heads, so that a spec naming an external checkpoint is checked before anything runs; and finding the
newest complete ``model.ckpt-<step>.pt`` of a training directory, that a restarted step continues from."""

from __future__ import annotations

import re
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any


class CheckpointError(ValueError):
    """A file is not a loadable DeePMD-kit training checkpoint; the message says why."""


@dataclass(frozen=True)
class CheckpointInfo:
    path: str
    heads: tuple[str, ...]  # the branches of a multi-task checkpoint; () for a single-task one
    type_map: tuple[str, ...]
    step: int | None

    @property
    def multitask(self) -> bool:
        return bool(self.heads)


def read_checkpoint(path: Path) -> CheckpointInfo:
    """What a ``.pt`` checkpoint holds, loaded as DeePMD-kit loads it (``torch.load(weights_only=True)``)."""
    try:
        import torch
    except ImportError as exc:  # pragma: no cover - torch is a dependency of every step image
        raise CheckpointError(f"{path}: cannot be checked without torch ({exc})") from None
    try:
        data: Any = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises many kinds for a file that is not a checkpoint
        first = str(exc).strip().splitlines()[0][:160] if str(exc).strip() else type(exc).__name__
        raise CheckpointError(
            f"{path}: not a DeePMD-kit training checkpoint (torch cannot load it: {first})"
        ) from None
    try:
        state = data["model"]["_extra_state"] if "model" in data else data["_extra_state"]
        params = state["model_params"]
    except (KeyError, TypeError):
        raise CheckpointError(
            f"{path}: not a DeePMD-kit training checkpoint (no model parameters in it)"
        ) from None
    if "model_dict" in params:
        heads = tuple(params["model_dict"])
        shared = params.get("shared_dict", {})
        first = params["model_dict"][heads[0]].get("type_map", [])
        type_map = tuple(shared.get(first, []) if isinstance(first, str) else first)
    else:
        heads, type_map = (), tuple(params.get("type_map", []))
    step = state.get("train_infos", {}).get("step") if isinstance(state.get("train_infos"), dict) else None
    return CheckpointInfo(str(path), heads, type_map, step)


CHECKPOINT_PATTERN = re.compile(r"model\.ckpt-(\d+)\.pt")


def latest_checkpoint(cwd: Path) -> Path | None:
    """The newest complete ``model.ckpt-<step>.pt`` in ``cwd``: a training step that was killed after saving
    one (preempted node, ``lamflow stop``, a crash) continues from it with ``dp --pt train --restart``. A
    checkpoint cut short by the kill (torch writes a zip archive; its central directory comes last) is
    passed over for the one before it."""
    found = sorted(
        (
            (int(m.group(1)), path)
            for path in cwd.glob("model.ckpt-*.pt")
            if (m := CHECKPOINT_PATTERN.fullmatch(path.name))
        ),
        reverse=True,
    )
    return next((path for _, path in found if zipfile.is_zipfile(path)), None)
