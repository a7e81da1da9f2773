"""Raw DFT outputs -> a deepmd/npy dataset, with dpdata reading every format (no parser of our own).

One labelled system per file (VASP OUTCAR/vasprun.xml, QE pw.x scf output, CP2K output, ABACUS), or many
per file (extxyz, deepmd/npy/mixed, deepmd/hdf5); systems are grouped by composition under the union type
map (dpdata's ``MultiSystems``), energies/forces/virials kept where present. The result is written to a
temporary folder, checked as ``validate`` checks any dataset (shapes, finite labels, type indices), and
only then moved into place: a failed conversion leaves nothing behind.
"""

from __future__ import annotations

import glob
import os
import shutil
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from lamflow.ops.data import DatasetError, DatasetInfo, inspect_dataset

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
        try:
            if RAW_FORMATS[fmt]:
                systems.append(dpdata.MultiSystems.from_file(str(source), fmt=fmt))
            else:
                system = dpdata.LabeledSystem(str(source), fmt=fmt)
                if system.get_nframes() == 0:
                    raise ValueError("no frames")
                systems.append(system)
        except DatasetError:
            raise
        except Exception as exc:  # dpdata's readers raise anything from IndexError to UnicodeDecodeError
            first = (str(exc).splitlines() or [""])[0][:200]
            raise DatasetError(f"{source}: not readable as {fmt} ({type(exc).__name__}: {first})") from None
    if systems.get_nframes() == 0:
        raise DatasetError(f"{', '.join(map(str, sources))}: no labelled frames")
    return systems


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
    folder = root / conversion_key(files, fmt, type_map)
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
    output.parent.mkdir(parents=True, exist_ok=True)
    scratch = Path(tempfile.mkdtemp(prefix=f".{output.name}-", dir=output.parent))
    try:
        systems.to("deepmd/npy", str(scratch))
        try:
            inspect_dataset(scratch)  # the pre-flight checks of every dataset, on what was written
        except DatasetError as exc:  # name the source's output folder, not the scratch one
            raise DatasetError(str(exc).replace(str(scratch), str(output))) from None
        os.replace(scratch, output)
    except BaseException:
        shutil.rmtree(scratch, ignore_errors=True)
        raise
    info = inspect_dataset(output)
    return Conversion(tuple(map(str, files)), str(output), info, tuple(str(n) for n in systems.atom_names))
