"""Raw DFT outputs converted inside the workflow. Pure: no I/O.

``validate`` converts every raw-format dataset once on this machine to check it (and to record its split
and subsets). The plan then converts them again where the steps run: one ``convert-datasets`` step reads
the staged source files (a pw.x input travels with its output) and outputs every converted dataset with
its train/test parts and learning-curve subsets; each step that reads one of them takes it from that
output (its ``converted`` artifact) instead of a staged copy. The step checks that its conversion has the
systems and frames validate checked. Step cache keys of the readers still hash the converted content.
"""

from __future__ import annotations

import os
import re
from dataclasses import replace
from pathlib import Path

from lamflow.ops.convert import ConversionJob, ConvertOP, ConvertParams, SourceFile
from lamflow.ops.data.split import SplitRule
from lamflow.workflows.compile.plan import ArtifactSource, ConvertedDatasets, DatasetBundle, StepPlan
from lamflow.workflows.resolve.resolved import ResolvedSpec

CONVERT_STEP = "convert-datasets"
_SUBSET = re.compile(r"@train-n(\d+)-r(\d+)$")


def base_dataset(name: str) -> str:
    """The spec dataset behind a part or subset name (``water@train-n4-r0`` -> ``water``)."""
    return name.partition("@")[0]


def _job(name: str, resolved: ResolvedSpec, entries: dict[str, Path]) -> ConversionJob:
    ds = resolved.spec.datasets[name]
    groups = []
    for n, source in enumerate(resolved.conversions[name]):
        group = []
        for k, path in enumerate(source):
            entry = f"{name}@source-{n:04d}" + (f"-{k}" if k else "")
            entries[entry] = path
            group.append(SourceFile(entry=entry, name=path.name))
        groups.append(group)
    subsets = sorted(
        (int(m.group(1)), int(m.group(2)))
        for subset in resolved.subsets
        if base_dataset(subset) == name and (m := _SUBSET.search(subset))
    )
    root = resolved.dataset_paths[name]
    split = ds.split
    return ConversionJob(
        format=ds.format,
        type_map=ds.type_map,
        sources=groups,
        split=None if split is None else SplitRule(split.test_fraction, split.test_frames, split.seed),
        subsets=subsets,
        systems={os.path.relpath(s.path, root): s.nframes for s in resolved.dataset_info[name].systems},
    )


def plan_conversion(
    steps: tuple[StepPlan, ...], resolved: ResolvedSpec
) -> tuple[tuple[StepPlan, ...], dict[str, Path]]:
    """``steps`` with the conversion step first and its readers rewired; and the source files to stage
    ({entry name: path}). Unchanged when no step reads a raw-format dataset."""
    used = sorted({base_dataset(n) for s in steps for n in s.datasets} & set(resolved.conversions))
    if not used:
        return steps, {}
    entries: dict[str, Path] = {}
    jobs = {name: _job(name, resolved, entries) for name in used}
    convert = StepPlan(
        key=CONVERT_STEP,
        op=ConvertOP,
        params=ConvertParams(datasets=jobs),
        summary=f"convert {', '.join(f'{n} ({jobs[n].format})' for n in used)} to deepmd/npy with dpdata",
        artifacts={"sources": DatasetBundle(tuple(entries))},
    )
    rewired = [convert]
    for step in steps:
        artifacts: dict[str, ArtifactSource] = {}
        for key, source in step.artifacts.items():
            converted = (
                tuple(n for n in source.names if base_dataset(n) in used)
                if isinstance(source, DatasetBundle)
                else ()
            )
            if not converted:
                artifacts[key] = source
                continue
            assert isinstance(source, DatasetBundle) and key == "datasets", (step.key, key)
            staged = tuple(n for n in source.names if n not in converted)
            if staged:
                artifacts[key] = DatasetBundle(staged)
            artifacts["converted"] = ConvertedDatasets(CONVERT_STEP, "datasets", converted)
        rewired.append(replace(step, artifacts=artifacts) if artifacts != step.artifacts else step)
    return tuple(rewired), entries
