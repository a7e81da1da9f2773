"""A dataset's check, remembered: validate reads every array of every dataset once (shapes, finite values,
types), and an unchanged dataset is not read again.

The key is the dataset's path and format and, for every file under it, its relative path, size and
modification time (``stat``, no reads): a changed, added or removed file checks the dataset again. A
dataset with more files than :data:`MAX_FILES` is checked every time. ``lamflow data check`` always reads
everything. Where the remembered results live: :mod:`lamflow.workflows.check_cache` (kind ``datasets``).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import asdict, fields
from pathlib import Path
from typing import Any

from lamflow.ops.data.datasets import NPY, DatasetInfo, SystemInfo, inspect_dataset
from lamflow.workflows import check_cache

VERSION = 2  # of the checks: raise when ops/data/datasets.py checks something new
MAX_FILES = 200_000


def _listing(path: Path) -> list[tuple[str, int, int]] | None:
    """(relative path, size, mtime in ns) of every file under ``path`` (or of the file), or None past
    :data:`MAX_FILES`."""
    if path.is_file():
        stat = path.stat()
        return [(path.name, stat.st_size, stat.st_mtime_ns)]
    found: list[tuple[str, int, int]] = []
    for root, dirs, names in os.walk(path):
        dirs.sort()
        for name in sorted(names):
            full = os.path.join(root, name)
            stat = os.stat(full)
            found.append((os.path.relpath(full, path), stat.st_size, stat.st_mtime_ns))
            if len(found) > MAX_FILES:
                return None
    return found


def _tuples(value: Any) -> Any:
    """JSON's lists back into the tuples of a frozen dataclass, nested ones too."""
    return tuple(_tuples(v) for v in value) if isinstance(value, list) else value


def _from_dict(data: dict[str, Any]) -> DatasetInfo:
    def system(item: dict[str, Any]) -> SystemInfo:
        values: dict[str, Any] = {}
        for spec in fields(SystemInfo):
            value = item[spec.name]
            values[spec.name] = _tuples(value)
        return SystemInfo(**values)

    return DatasetInfo(data["path"], data["format"], tuple(system(s) for s in data["systems"]))


def inspect_remembered(
    path: Path, fmt: str = NPY, properties: Mapping[str, int] | None = None
) -> DatasetInfo:
    """:func:`inspect_dataset` (with the declared ``properties``: name -> values per frame), or its
    remembered result for the same files and declarations."""
    try:
        listing = _listing(path) if path.exists() else None
    except OSError:
        listing = None
    if listing is None:
        return inspect_dataset(path, fmt, properties=properties)
    key = {
        "version": VERSION,
        "path": str(path.resolve()),
        "format": fmt,
        "files": listing,
        "properties": sorted((properties or {}).items()),
    }
    known = check_cache.recall("datasets", key)
    if known is not None:
        try:
            return _from_dict(known)
        except (KeyError, TypeError, ValueError):
            pass
    info = inspect_dataset(path, fmt, properties=properties)
    check_cache.remember("datasets", key, asdict(info))
    return info
