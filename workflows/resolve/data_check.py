"""``lamflow data check``: one dataset checked as validate checks it, without a spec — imported alone by the
CLI (numpy and pydantic, no dflow), so that the check of a large set is not preceded by a second of
imports it does not use. Raw DFT outputs go through dpdata (and the ops that convert them) first.
"""

from __future__ import annotations

import dataclasses
import os
import tempfile
import time
from pathlib import Path

from lamflow.ops.data import datasets
from lamflow.ops.data.datasets import DatasetInfo
from lamflow.workflows.errors import UsageError


def data_check(
    path: str | Path | list[str],
    fmt: str = "deepmd/npy",
    max_files: int | None = None,
    max_depth: int | None = None,
    properties: dict[str, int] | None = None,
) -> tuple[DatasetInfo, float]:
    """Check a dataset as ``validate`` does; returns its report and the seconds the check took. Raw DFT
    outputs (``fmt`` one of dpdata's formats; paths or globs) are converted as ``validate`` converts them,
    into a temporary folder, and the result is checked: the report names the systems dpdata made."""
    started = time.perf_counter()
    sources = [str(p) for p in path] if isinstance(path, list) else [str(path)]
    try:
        if fmt in datasets.FORMATS:
            if len(sources) != 1:
                raise datasets.DatasetError(f"{fmt}: give one dataset path (got {len(sources)})")
            info = datasets.inspect_dataset(
                sources[0],
                fmt,
                max_files or datasets.MAX_ENTRIES,
                max_depth or datasets.MAX_DEPTH,
                properties=properties,
            )
        elif properties:
            raise datasets.DatasetError(f"{fmt}: properties are read from deepmd/npy or deepmd/hdf5 sets")
        else:
            info = _check_raw(sources, fmt)
    except datasets.DatasetError as exc:
        raise UsageError(str(exc)) from None
    return info, time.perf_counter() - started


def _check_raw(sources: list[str], fmt: str) -> DatasetInfo:
    """Raw outputs converted into a temporary folder and checked; paths in the report and in errors name
    the sources and the converted systems, not the temporary folder."""
    from lamflow.ops import convert  # here: dpdata and the ops (dflow) only for raw outputs

    shown = " ".join(sources)
    with tempfile.TemporaryDirectory(prefix="lamflow-check-") as tmp:
        out = Path(tmp) / "converted"
        try:
            info = convert.convert(sources, fmt, out).info
        except datasets.DatasetError as exc:
            message = str(exc).replace(str(out) + os.sep, f"{shown} ({fmt}): converted system ")
            raise datasets.DatasetError(message.replace(str(out), f"{shown} ({fmt})")) from None
    systems = tuple(dataclasses.replace(s, path=os.path.relpath(s.path, out)) for s in info.systems)
    return DatasetInfo(path=shown, format=fmt, systems=systems)


__all__ = ["data_check"]
