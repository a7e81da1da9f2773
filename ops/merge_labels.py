"""Merge step of the concurrent-learning loop: the frames labelled so far (the previous iteration's merge,
absent in iteration 1) and this iteration's labels — from one label step, or from up to ``MAX_PARTS`` label
steps that shared the picks (fan-out) — as one folder of deepmd/npy systems: what the next iteration's
ensemble trains on and what the loop hands out as its labelled dataset. This iteration's systems are named
``i<nnn>-<system>`` (``i<nnn>-s<k>-<system>`` for label step k of several); earlier ones keep their names,
so a system never changes. It also hands out this iteration's labels alone, with the label steps' reports
summed (``labels/label-report.json``: what the decision step and the run's records read)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

from dflow.python import FatalError
from pydantic import Field

from lamflow.ops.data.datasets import find_npy_systems
from lamflow.ops.label_dft import COUNTS, ERRORS_SHOWN
from lamflow.ops.label_dft import REPORT as LABEL_REPORT
from lamflow.ops.runtime.common import work_dir, write_json
from lamflow.ops.runtime.contract import LamflowOP, OpModel

RECORD = "labelled.json"


MAX_PARTS = 8


class MergeLabelsParams(OpModel):
    iteration: int = Field(1, ge=1, description="The loop's iteration (set by the loop).")
    parts: int = Field(1, ge=1, le=MAX_PARTS, description="Label steps wired: labels, labels2 ...")


class MergeLabelsInput(MergeLabelsParams):
    previous: Path | None = Field(None, description="Everything labelled before this iteration.")
    labels: Path = Field(description="This iteration's labels (deepmd/npy systems), of label step 1.")
    labels2: Path | None = None
    labels3: Path | None = None
    labels4: Path | None = None
    labels5: Path | None = None
    labels6: Path | None = None
    labels7: Path | None = None
    labels8: Path | None = None


class MergeLabelsOutput(OpModel):
    labelled: Path = Field(description="deepmd/npy systems: every frame labelled so far.")
    labels: Path = Field(
        description="This iteration's labels, every label step's, with their reports summed."
    )
    report: dict[str, Any]


def summed_reports(reports: list[dict[str, Any]]) -> dict[str, Any]:
    """The label steps' reports as one: counts added, errors kept (up to five)."""
    if len(reports) == 1:
        return reports[0]
    total: dict[str, Any] = {k: sum(int(r.get(k, 0)) for r in reports) for k in COUNTS}
    total["labeler"] = reports[0].get("labeler")
    total["errors"] = [e for r in reports for e in r.get("errors", [])][:ERRORS_SHOWN]
    total["steps"] = len(reports)
    return total


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
        parts = [inp.labels, *(getattr(inp, f"labels{k}") for k in range(2, inp.parts + 1))]
        if any(part is None for part in parts):
            raise FatalError(f"merge-labels: {inp.parts} label steps expected, some are missing")
        labels = out.parent / "labels"
        if labels.exists():
            shutil.rmtree(labels)
        labels.mkdir()
        added = 0
        reports = []
        for k, part in enumerate(parts, start=1):
            share = f"s{k}-" if inp.parts > 1 else ""
            for system in find_npy_systems(part):
                name = f"{share}{system.relative_to(part)}"
                shutil.copytree(system, out / f"i{inp.iteration:03d}-{name}")
                shutil.copytree(system, labels / name)
                added += _frames(system)
            if (part / LABEL_REPORT).is_file():
                reports.append(json.loads((part / LABEL_REPORT).read_text()))
        if reports:
            write_json(labels / LABEL_REPORT, summed_reports(reports))
        report = {"iteration": inp.iteration, "frames_before": before, "frames_added": added,
                  "frames": before + added, "systems": len(find_npy_systems(out))}  # fmt: skip
        write_json(out.parent / RECORD, report)
        print("merge-labels: " + ", ".join(f"{k} {v}" for k, v in report.items()))
        return MergeLabelsOutput(labelled=out, labels=labels, report=report)
