"""``dp test`` detail files (``<prefix>.e_peratom.out``, ``.f.out``, ``.v_peratom.out``): one block per
tested system, headed ``# <system>: data_... pred_...``, as DeePMD-kit appends them. Read into arrays for
parity plots and per-system errors (coverage)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from lamflow.ops import files

SUFFIXES = {"energy": "e_peratom.out", "force": "f.out", "virial": "v_peratom.out"}


def read_blocks(path: Path) -> dict[str, np.ndarray]:
    """{system: rows (label columns then prediction columns)} of one detail file, in file order; a system
    is named by its folder's name (the path is the step's scratch copy)."""
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
    """{quantity: {system: rows}} for the quantities whose file exists (virials only with virial labels)."""
    out = {}
    for quantity, suffix in SUFFIXES.items():
        path = detail_dir / f"{files.DETAIL_PREFIX}.{suffix}"
        if path.is_file():
            out[quantity] = read_blocks(path)
    return out


def split_columns(rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(labels, predictions) of detail rows: the first half of the columns, then the second."""
    half = rows.shape[1] // 2
    return rows[:, :half], rows[:, half:]


def per_system_errors(detail: dict[str, dict[str, np.ndarray]]) -> dict[str, dict[str, float]]:
    """{system: {energy_rmse_per_atom, force_rmse[, virial_rmse_per_atom], frames}} from the detail files."""
    names = {"energy": "energy_rmse_per_atom", "force": "force_rmse", "virial": "virial_rmse_per_atom"}
    out: dict[str, dict[str, float]] = {}
    for quantity, blocks in detail.items():
        for system, rows in blocks.items():
            label, pred = split_columns(rows)
            if quantity == "virial" and not np.any(label):
                continue  # no virial labels: DeePMD-kit writes zeros
            entry = out.setdefault(system, {})
            entry[names[quantity]] = float(np.sqrt(np.mean((pred - label) ** 2)))
            if quantity == "energy":
                entry["frames"] = float(len(rows))
    return out
