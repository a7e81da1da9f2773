"""The terminal, with nothing else imported: the console the CLI prints through, and the report of
``lamflow data check`` (which must start fast on a large set: rich only, no dflow, no engines).
"""

from __future__ import annotations

import errno
import os
from typing import TextIO

from rich.console import Console
from rich.table import Table


class _Console(Console):
    def on_broken_pipe(self) -> None:
        """A closed stdout (`lamflow status RUN | head`): raise it like any other write, so the CLI's one
        closed-pipe path handles it (rich itself would exit 1)."""
        raise BrokenPipeError(errno.EPIPE, os.strerror(errno.EPIPE))


def console(file: TextIO | None = None) -> Console:
    out = _Console(file=file, highlight=False)
    if not out.is_terminal:  # logs and pipes: don't squeeze tables into 80 columns
        out.width = 160
    return out


def dataset_report(info, seconds: float) -> None:  # info: lamflow.ops.data.datasets.DatasetInfo
    table = Table(title=f"{info.path} ({info.format}): {len(info.systems)} systems, {info.nframes} frames")
    others = any(system.other_arrays for system in info.systems)
    columns = ["system", "frames", "atoms", "elements", "arrays", "PBC", "E/atom eV (min..max)"]
    columns += ["not read by the energy loss"] if others else []
    with_properties = any(system.properties for system in info.systems)
    columns += ["properties (values/frame)"] if with_properties else []
    for column in columns:
        table.add_column(column, justify="right" if column in ("frames", "atoms") else "left")
    for system in info.systems:
        try:
            elements = " ".join(system.elements())
        except ValueError:
            elements = "types " + " ".join(map(str, system.types)) + " (no type_map.raw)"
        e = system.energy_per_atom
        table.add_row(
            system.path, str(system.nframes), str(system.natoms), elements, " ".join(system.arrays),
            "yes" if system.pbc else "no", f"{e[0]:.4f}..{e[1]:.4f}" if e else "-",
            *([" ".join(system.other_arrays) or "-"] if others else []),
            *([" ".join(f"{p[0]} ({len(p[2])})" for p in system.properties)] if with_properties else []),
        )  # fmt: skip
    out = console()
    out.print(table)
    out.print(f"[green]ok[/green] checked in {seconds:.2f} s")
