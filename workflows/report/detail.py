"""What ``dp test`` leaves: detail files (``<prefix>.e_peratom.out``, ``.f.out``, ``.v_peratom.out``: label
columns then prediction columns, every system's rows appended under one ``# <first system>: ...`` header)
read into arrays for parity plots; and the log, whose per-system blocks (``# testing system : <path>``,
``# number of test data : N``, then the errors) give the per-system errors of the coverage table."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import numpy as np

from lamflow.ops.runtime import files

SUFFIXES = {"energy": "e_peratom.out", "force": "f.out", "virial": "v_peratom.out"}


def read_blocks(path: Path) -> dict[str, np.ndarray]:
    """{header: rows (label columns then prediction columns)} of one detail file, in file order, a block
    named by its header's folder name. DeePMD-kit 3.2 writes one header for all systems; a file with
    several headers is read block by block."""
    blocks: dict[str, list[list[float]]] = {}
    current: list[list[float]] | None = None
    for line in path.read_text().splitlines():
        if line.startswith("#"):
            header = line[1:].strip()
            system = Path(header.rsplit(":", 1)[0].strip() if ":" in header else header).name
            current = blocks.setdefault(system, [])
        elif line.strip() and current is not None:
            current.append([float(x) for x in line.split()])
    return {s: np.asarray(rows, dtype=float) for s, rows in blocks.items() if rows}


def read_detail(detail_dir: Path) -> dict[str, dict[str, np.ndarray]]:
    """{quantity: {system: rows}} for the quantities whose file exists (virials only with virial labels).
    One block holding every system is split by the test step's ``systems.json`` (frames and atoms of each
    system, in dp test's order) when its row counts agree."""
    systems = _tested_systems(detail_dir / "systems.json")
    out = {}
    for quantity, suffix in SUFFIXES.items():
        path = detail_dir / f"{files.DETAIL_PREFIX}.{suffix}"
        if path.is_file():
            blocks = read_blocks(path)
            if len(blocks) == 1 and len(systems) > 1:
                blocks = _split_by_system(next(iter(blocks.values())), systems, quantity) or blocks
            out[quantity] = blocks
    return out


def _tested_systems(path: Path) -> list[dict[str, Any]]:
    try:
        return list(json.loads(path.read_text()))
    except (OSError, ValueError, TypeError):
        return []


def _split_by_system(
    rows: np.ndarray, systems: list[dict[str, Any]], quantity: str
) -> dict[str, np.ndarray] | None:
    """Rows of one block cut into systems: a row per frame (energy, virial) or per atom of each frame
    (force); None when the counts do not add up."""
    sizes = [int(s["frames"]) * (int(s["atoms"]) if quantity == "force" else 1) for s in systems]
    if sum(sizes) != len(rows):
        return None
    out: dict[str, np.ndarray] = {}
    start = 0
    for system, size in zip(systems, sizes, strict=True):
        name = str(system["system"])
        while name in out:  # two systems of one folder name (in different parents)
            name += "'"
        out[name] = rows[start : start + size]
        start += size
    return out


def split_columns(rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(labels, predictions) of detail rows: the first half of the columns, then the second."""
    half = rows.shape[1] // 2
    return rows[:, :half], rows[:, half:]


_SYSTEM = re.compile(r"# testing system : (\S+)")
_FRAMES = re.compile(r"# number of test data : (\d+)")


def per_system_errors(log_text: str) -> dict[str, dict[str, float]]:
    """{system folder name: {energy_rmse_per_atom, force_rmse[, virial_rmse_per_atom], frames}} from the
    per-system blocks of a ``dp test`` log (the weighted-average block at the end is not a system)."""
    from lamflow.ops.test import parse_test_metrics

    end = log_text.rfind("weighted average of errors")
    body = log_text[:end] if end >= 0 else log_text
    starts = [(m.start(), Path(m.group(1)).name) for m in _SYSTEM.finditer(body)]
    out: dict[str, dict[str, float]] = {}
    for (start, name), (stop, _) in zip(starts, [*starts[1:], (len(body), "")], strict=True):
        block = body[start:stop]
        try:
            metrics = parse_test_metrics("weighted average of errors\n" + block)
        except ValueError:
            continue
        entry = {
            k: v
            for k, v in metrics.items()
            if k in ("energy_rmse_per_atom", "force_rmse", "virial_rmse_per_atom")
        }
        frames = _FRAMES.search(block)
        if frames:
            entry["frames"] = float(frames.group(1))
        out[name] = entry
    return out
