"""Raw DFT outputs -> a deepmd/npy dataset, with dpdata reading every format (no parser of our own).

One labelled system per file (VASP OUTCAR/vasprun.xml, QE pw.x scf output, CP2K output, ABACUS), or many
per file (extxyz, deepmd/npy/mixed, deepmd/hdf5); systems are grouped by composition under the union type
map (dpdata's ``MultiSystems``), energies/forces/virials kept where present. The result is written to a
temporary folder, checked as ``validate`` checks any dataset (shapes, finite labels, type indices), and
only then moved into place: a failed conversion leaves nothing behind.

:class:`ConvertOP` is the workflow's ``convert-datasets`` step: it converts the staged raw outputs of every
raw-format dataset of a spec (as ``validate`` did, to check them), makes their train/test parts and
learning-curve subsets, and outputs them as the ``{name: folder}`` artifact the other steps read.
"""

from __future__ import annotations

import glob
import os
import shutil
import tempfile
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
from dflow.python import FatalError
from pydantic import Field

from lamflow.ops.data.datasets import DatasetError, DatasetInfo, inspect_dataset
from lamflow.ops.data.split import SplitRule
from lamflow.ops.runtime.common import work_dir
from lamflow.ops.runtime.contract import LamflowOP, OpModel

# format -> reads several systems from one file (MultiSystems.from_file) or one (LabeledSystem)
RAW_FORMATS = {
    "vasp/outcar": False,
    "vasp/xml": False,
    "qe/pw/scf": False,
    "cp2k/output": False,
    "abacus/md": False,
    "abacus/scf": False,
    "extxyz": True,
    "deepmd/npy/mixed": True,
    "deepmd/hdf5": True,
    "deepmd/npy": False,
}


@dataclass(frozen=True)
class Conversion:
    sources: tuple[str, ...]
    output: str
    info: DatasetInfo  # the written dataset, as `data check` reports it
    type_map: tuple[str, ...]


def expand_sources(patterns: Sequence[str | Path]) -> list[Path]:
    """Files named by paths or glob patterns, sorted; a pattern matching nothing is an error."""
    found: list[Path] = []
    for pattern in patterns:
        text = str(pattern)
        matches = sorted(glob.glob(text, recursive=True)) if glob.has_magic(text) else [text]
        if not matches or not Path(matches[0]).exists():
            why = " (the pattern matches nothing)" if glob.has_magic(text) else ""
            raise DatasetError(f"{text}: no such file{why}")
        found += [Path(m) for m in matches]
    return found


def read_systems(sources: Sequence[Path], fmt: str, type_map: Sequence[str] | None = None):
    """The labelled systems in ``sources`` as one dpdata ``MultiSystems`` (union type map)."""
    import dpdata

    if fmt not in RAW_FORMATS:
        raise DatasetError(f"unknown format {fmt!r} (one of {', '.join(RAW_FORMATS)})")
    systems = dpdata.MultiSystems(type_map=list(type_map) if type_map else None)
    for source in sources:
        if source.is_file() and source.stat().st_size == 0:
            raise DatasetError(f"{source}: empty file (0 bytes), not a {fmt} output")
        with warnings.catch_warnings(record=True) as warned:  # dpdata's warnings: into our one line
            warnings.simplefilter("always")
            try:
                read: Any
                if RAW_FORMATS[fmt]:
                    read = dpdata.MultiSystems.from_file(str(source), fmt=fmt)
                    parts: list[Any] = list(read.systems.values())
                else:
                    read = dpdata.LabeledSystem(str(source), fmt=fmt)
                    if read.get_nframes() == 0:
                        raise ValueError("no frames")
                    parts = [read]
            except Exception as exc:  # dpdata's readers raise anything from IndexError to UnicodeDecodeError
                first = (str(exc).splitlines() or [""])[0][:200]
                said = f"; dpdata warned: {str(warned[0].message).splitlines()[0][:120]}" if warned else ""
                raise DatasetError(
                    f"{source}: not readable as {fmt} ({type(exc).__name__}: {first}){said}"
                ) from None
        for part in parts:
            _check_finite(source, part, several=len(parts) > 1)
        systems.append(read)
    if systems.get_nframes() == 0:
        raise DatasetError(f"{', '.join(map(str, sources))}: no labelled frames")
    return systems


# dpdata's label arrays -> the name a user knows them by
_LABELS = {
    "coords": "coordinate",
    "cells": "cell",
    "energies": "energy",
    "forces": "force",
    "virials": "virial",
}


def _check_finite(source: Path, system: Any, several: bool) -> None:
    """A non-finite value in what dpdata read is named by its source file and frame (the converted copy's
    cache path would mean nothing to the user)."""
    for key, label in _LABELS.items():
        if key not in system.data:
            continue
        values = np.asarray(system.data[key], dtype=float).reshape(system.get_nframes(), -1)
        finite = np.isfinite(values).all(axis=1)
        if not finite.all():
            frame = int(np.argmin(finite))
            bad = values[frame][~np.isfinite(values[frame])][0]
            which = f"frame {frame} of its {system.formula} frames" if several else f"frame {frame}"
            raise DatasetError(f"{source}: {which}: non-finite {label} value {bad}")


def conversion_key(sources: Sequence[Path], fmt: str, type_map: Sequence[str] | None) -> str:
    """The digest naming a conversion's output: the format, the type map and every source file's content."""
    import hashlib

    digest = hashlib.sha256(repr((fmt, list(type_map) if type_map else None)).encode())
    for source in sources:  # a folder (deepmd/npy): its files, in order
        found = [source] if source.is_file() else sorted(p for p in source.rglob("*") if p.is_file())
        for path in found:
            digest.update(str(path.relative_to(source.parent)).encode())
            with path.open("rb") as handle:
                for block in iter(lambda: handle.read(1 << 20), b""):
                    digest.update(block)
    return digest.hexdigest()[:32]


def convert_cached(
    sources: Sequence[str | Path], fmt: str, root: Path, type_map: Sequence[str] | None = None
) -> Path:
    """``root/<digest>``: the sources converted once per content (as :func:`convert` does), reused after."""
    files = expand_sources(sources)
    read = [path for source in files for path in source_files(source, fmt)]  # a pw.x input counts too
    folder = root / conversion_key(read, fmt, type_map)
    if folder.is_dir():
        return folder
    try:
        convert(files, fmt, folder, type_map)
    except (DatasetError, OSError):
        if folder.is_dir():  # another validate converted the same sources first
            return folder
        raise
    return folder


def convert(
    sources: Sequence[str | Path], fmt: str, output: str | Path, type_map: Sequence[str] | None = None
) -> Conversion:
    """Convert ``sources`` (paths or globs) to deepmd/npy at ``output`` (which must not exist yet)."""
    output = Path(output)
    if output.exists():
        raise DatasetError(f"{output}: already exists (choose a new folder; nothing is overwritten)")
    files = expand_sources(sources)
    systems = read_systems(files, fmt, type_map)
    info = write_checked(systems, output)
    return Conversion(tuple(map(str, files)), str(output), info, tuple(str(n) for n in systems.atom_names))


def source_files(source: Path, fmt: str) -> list[Path]:
    """What dpdata reads for one source: the file or folder, and for ``qe/pw/scf`` the pw.x input found
    next to the output (its name with 'out' replaced by 'in', as dpdata looks for it) when there is one."""
    found = [source]
    if fmt == "qe/pw/scf":
        sibling = source.with_name(source.name.replace("out", "in"))
        if sibling != source and sibling.is_file():
            found.append(sibling)
    return found


def write_checked(systems: Any, output: Path) -> DatasetInfo:
    """Write dpdata ``systems`` as deepmd/npy at ``output`` (absent): into a temporary folder, checked as
    every dataset is, then renamed into place. Returns the check's report, with paths under ``output``."""
    output.parent.mkdir(parents=True, exist_ok=True)
    scratch = Path(tempfile.mkdtemp(prefix=f".{output.name}-", dir=output.parent))
    try:
        systems.to("deepmd/npy", str(scratch))
        try:
            info = inspect_dataset(scratch)  # the pre-flight checks of every dataset, on what was written
        except DatasetError as exc:  # name the source's output folder, not the scratch one
            raise DatasetError(str(exc).replace(str(scratch), str(output))) from None
        os.replace(scratch, output)
    except BaseException:
        shutil.rmtree(scratch, ignore_errors=True)
        raise
    moved = [replace(s, path=str(output / Path(s.path).relative_to(scratch))) for s in info.systems]
    return replace(info, path=str(output), systems=tuple(moved))


class SourceFile(OpModel):
    entry: str = Field(description="Its name in the staged `sources` artifact.")
    name: str = Field(description="The file or folder name dpdata reads it under (QE finds its input by it).")


class ConversionJob(OpModel):
    """One raw-format dataset: what to read, how to split it, which subsets to draw, what validate saw."""

    format: str
    type_map: list[str] | None = None
    sources: list[list[SourceFile]] = Field(
        description="One list per source, in order: the file dpdata reads first, then the files it reads "
        "beside it (a pw.x input)."
    )
    split: SplitRule | None = None
    subsets: list[tuple[int, int]] = Field(
        default_factory=list, description="(frames, repeat) of the learning-curve subsets of the train part."
    )
    systems: dict[str, int] = Field(
        description="Frames per system (path relative to the dataset) of the conversion validate checked."
    )


class ConvertParams(OpModel):
    datasets: dict[str, ConversionJob]


class ConvertInput(ConvertParams):
    sources: dict[str, Path]


class ConvertOutput(OpModel):
    datasets: dict[str, Path] = Field(
        description="name -> deepmd/npy folder, with <name>@train, <name>@test and the subsets "
        "<name>@train-n<N>-r<k> of split datasets."
    )


class ConvertOP(LamflowOP[ConvertInput, ConvertOutput]):
    """Raw DFT outputs -> the deepmd/npy datasets (and their parts) the workflow's other steps read."""

    name = "convert"
    preload = ("dpdata",)
    Params = ConvertParams
    Input = ConvertInput
    Output = ConvertOutput

    def run(self, inp: ConvertInput) -> ConvertOutput:
        from lamflow.ops.data.split import PARTS, write_split, write_subset

        cwd = work_dir()
        out: dict[str, Path] = {}
        for name, job in inp.datasets.items():
            files = []
            for n, group in enumerate(job.sources):
                folder = cwd / "sources" / name / f"{n:04d}"
                folder.mkdir(parents=True, exist_ok=True)
                for item in group:
                    link = folder / item.name
                    if not link.exists():
                        link.symlink_to(inp.sources[item.entry].resolve())
                files.append(folder / group[0].name)
            try:
                output = cwd / "converted" / name
                systems = write_checked(read_systems(files, job.format, job.type_map), output).systems
            except DatasetError as exc:
                raise FatalError(f"convert: datasets.{name}: {exc}") from None
            seen = {os.path.relpath(s.path, output): s.nframes for s in systems}
            if seen != job.systems:
                raise FatalError(
                    f"convert: datasets.{name}: dpdata here converted {_frames(seen)}, validate checked "
                    f"{_frames(job.systems)} (do this image's dpdata and the client's agree?)"
                )
            out[name] = output
            if job.split is None:
                continue
            folder, _ = write_split([s.path for s in systems], job.split, None, cwd / "splits")
            for part in PARTS:
                out[f"{name}@{part}"] = folder / part
            train = [s.path for s in inspect_dataset(folder / "train").systems]
            for size, repeat in job.subsets:
                subset, _ = write_subset(train, size, repeat, job.split.seed, cwd / "splits" / "subsets")
                out[f"{name}@train-n{size}-r{repeat}"] = subset
        return ConvertOutput(datasets=out)


def _frames(systems: dict[str, int]) -> str:
    return f"{sum(systems.values())} frames in {len(systems)} systems ({', '.join(sorted(systems))})"
