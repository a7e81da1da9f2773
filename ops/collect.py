"""Collect step: merge up to ``FAN_IN`` exploration branches (or earlier collections) into one folder of
branch folders. A fan-in wider than that is a tree of collect steps (short: they share a worker process
locally and a pod on Argo), so no artifact ever has more than one producer."""

from __future__ import annotations

import shutil
from pathlib import Path

from dflow.python import FatalError
from pydantic import Field

from lamflow.ops.explore import REPORT
from lamflow.ops.runtime.common import work_dir
from lamflow.ops.runtime.contract import LamflowOP, OpModel

FAN_IN = 8


class CollectParams(OpModel):
    parts: int = Field(ge=1, le=FAN_IN, description="How many of part1..part8 are wired.")


class CollectInput(CollectParams):
    part1: Path
    part2: Path | None = None
    part3: Path | None = None
    part4: Path | None = None
    part5: Path | None = None
    part6: Path | None = None
    part7: Path | None = None
    part8: Path | None = None


class CollectOutput(OpModel):
    branches: Path = Field(description="Folder of branch folders (each with trajectory and report).")


def branch_folders(part: Path) -> list[Path]:
    """A part is one branch folder (holds report.json) or a collection of them."""
    part = part.resolve()
    if (part / REPORT).is_file():
        return [part]
    found = sorted(p for p in part.iterdir() if (p / REPORT).is_file())
    if not found:
        raise FatalError(f"{part}: neither an exploration branch nor a collection of branches")
    return found


class CollectOP(LamflowOP[CollectInput, CollectOutput]):
    name = "collect"
    Params = CollectParams
    Input = CollectInput
    Output = CollectOutput

    def run(self, inp: CollectInput) -> CollectOutput:
        out = work_dir() / "branches"
        out.mkdir(parents=True, exist_ok=True)
        parts = [getattr(inp, f"part{i}") for i in range(1, inp.parts + 1)]
        if any(p is None for p in parts):
            raise FatalError(f"collect: {inp.parts} parts expected, some are missing")
        for part in parts:
            for branch in branch_folders(part):
                target = out / branch.name
                if target.exists():
                    raise FatalError(f"collect: two branches named {branch.name!r}")
                shutil.copytree(branch, target, ignore=shutil.ignore_patterns(".dflow"))
        return CollectOutput(branches=out)
