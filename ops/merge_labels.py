"""Merge step of the concurrent-learning loop: the frames labelled so far (the previous iteration's merge,
absent in iteration 1) and this iteration's labels, as one folder of deepmd/npy systems — what the next
iteration's ensemble trains on and what the loop hands out as its labelled dataset. This iteration's
systems are named ``i<nnn>-<system>``; earlier ones keep their names, so a system never changes."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

from pydantic import Field

from lamflow.ops.data.datasets import find_npy_systems
from lamflow.ops.runtime.common import work_dir, write_json
from lamflow.ops.runtime.contract import LamflowOP, OpModel

RECORD = "labelled.json"


class MergeLabelsParams(OpModel):
    iteration: int = Field(1, ge=1, description="The loop's iteration (set by the loop).")


class MergeLabelsInput(MergeLabelsParams):
    previous: Path | None = Field(None, description="Everything labelled before this iteration.")
    labels: Path = Field(description="This iteration's labels (deepmd/npy systems).")


class MergeLabelsOutput(OpModel):
    labelled: Path = Field(description="deepmd/npy systems: every frame labelled so far.")
    report: dict[str, Any]


def _frames(system: Path) -> int:
    import numpy as np

    return sum(int(np.load(c, mmap_mode="r").shape[0]) for c in sorted(system.glob("set.*/coord.npy")))


class MergeLabelsOP(LamflowOP[MergeLabelsInput, MergeLabelsOutput]):
    """Every frame labelled so far, one folder."""

    name = "merge-labels"
    Params = MergeLabelsParams
    Input = MergeLabelsInput
    Output = MergeLabelsOutput

    def run(self, inp: MergeLabelsInput) -> MergeLabelsOutput:
        out = work_dir() / "labelled"
        if out.exists():
            shutil.rmtree(out)  # a rerun starts over
        out.mkdir(parents=True)
        before = 0
        if inp.previous is not None:
            for system in find_npy_systems(inp.previous):
                shutil.copytree(system, out / system.relative_to(inp.previous))
                before += _frames(system)
        added = 0
        for system in find_npy_systems(inp.labels):
            shutil.copytree(system, out / f"i{inp.iteration:03d}-{system.relative_to(inp.labels)}")
            added += _frames(system)
        report = {"iteration": inp.iteration, "frames_before": before, "frames_added": added,
                  "frames": before + added, "systems": len(find_npy_systems(out))}  # fmt: skip
        write_json(out.parent / RECORD, report)
        print("merge-labels: " + ", ".join(f"{k} {v}" for k, v in report.items()))
        return MergeLabelsOutput(labelled=out, report=report)
