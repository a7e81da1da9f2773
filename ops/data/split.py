"""Train/test splits of a deepmd/npy dataset, per system, by fraction or count, with a seed: the frame
indices (pure, reproducible) and the two parts written once into a content-addressed folder
(``<root>/<digest>/{train,test}/<system>``, plus ``split.json`` recording every index); and the nested
random subsets of a train part that learning curves train on (``subset.json``).

A part keeps every array of its system, frame by frame, in the set it came from (``set.000`` of the source
-> ``set.000`` of the part): label arrays, and the ones no energy loss reads (``hessian``, ``aparam``,
``fparam``, atomic properties), so a split part holds what the whole dataset held; the files beside the
sets (``type.raw``, ``type_map.raw``, ``nopbc``) are copied."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

PARTS = ("train", "test")


@dataclass(frozen=True)
class SplitRule:
    test_fraction: float | None = None  # share of each system's frames held out (rounded, at least 1)
    test_frames: int | None = None  # or this many frames per system
    seed: int = 1

    def test_count(self, nframes: int) -> int:
        if self.test_frames is not None:
            return self.test_frames
        assert self.test_fraction is not None
        return max(1, int(round(self.test_fraction * nframes)))


def split_indices(nframes: int, rule: SplitRule, system_index: int) -> tuple[list[int], list[int]]:
    """(train, test) frame indices of one system: disjoint, sorted, the same for the same seed."""
    k = rule.test_count(nframes)
    if not 0 < k < nframes:
        raise ValueError(
            f"{nframes} frames: a test part of {k} leaves the {'test' if k <= 0 else 'train'} part empty"
        )
    rng = np.random.default_rng([rule.seed, system_index])
    test = sorted(int(i) for i in rng.choice(nframes, size=k, replace=False))
    held = set(test)
    return [i for i in range(nframes) if i not in held], test


def content_digest(system: str | Path) -> str:
    """SHA-256 over every file of a deepmd/npy system (relative names and bytes): a changed label or an added
    array makes new parts."""
    digest = hashlib.sha256()
    root = Path(system)
    for file in sorted(p for p in root.rglob("*") if p.is_file()):
        digest.update(file.relative_to(root).as_posix().encode() + b"\0")
        with open(file, "rb") as handle:
            for block in iter(lambda: handle.read(1 << 20), b""):
                digest.update(block)
    return digest.hexdigest()


def split_key(systems: Sequence[str], rule: SplitRule, type_map: Sequence[str] | None) -> str:
    """The digest naming a split's folder: the systems' content, the rule and the type map."""
    record = {
        "layout": 3,  # 2: split.json keys part folders; 3: parts keep every array of the source
        "systems": [content_digest(s) for s in systems],
        "rule": [rule.test_fraction, rule.test_frames, rule.seed],
        "type_map": list(type_map) if type_map else None,
    }
    return hashlib.sha256(json.dumps(record, sort_keys=True).encode()).hexdigest()[:32]


def write_split(
    systems: Sequence[str], rule: SplitRule, type_map: Sequence[str] | None, root: Path
) -> tuple[Path, dict[str, dict[str, list[int]]]]:
    """``root/<digest>`` holding ``train/`` and ``test/`` (one folder per system, as in the source) and
    ``split.json``; written once (temporary name, then rename), reused after. Returns (folder, indices keyed
    by the part folder's name, ``<index>-<system folder>``)."""
    folder = root / split_key(systems, rule, type_map)
    record_file = folder / "split.json"
    if record_file.is_file():
        return folder, json.loads(record_file.read_text())["systems"]
    root.mkdir(parents=True, exist_ok=True)
    scratch = Path(tempfile.mkdtemp(prefix=".split-", dir=root))
    indices: dict[str, dict[str, list[int]]] = {}
    try:
        for n, system in enumerate(systems):
            train, test = split_indices(system_frames(system), rule, n)
            name = f"{n:04d}-{Path(system).name}"
            for part, chosen in zip(PARTS, (train, test), strict=True):
                write_frames(system, chosen, scratch / part / name, type_map)
            indices[name] = {"train": train, "test": test}
        _publish(scratch, folder, record_file, {"rule": rule.__dict__, "systems": indices})
    except BaseException:
        shutil.rmtree(scratch, ignore_errors=True)
        raise
    return folder, indices


def _sets(system: str | Path) -> list[Path]:
    return sorted(p for p in Path(system).glob("set.*") if p.is_dir())


def _set_frames(set_dir: Path) -> int:
    return int(np.load(set_dir / "coord.npy", mmap_mode="r", allow_pickle=False).shape[0])


def system_frames(system: str | Path) -> int:
    """Frames of a deepmd/npy system (all its sets)."""
    return sum(_set_frames(d) for d in _sets(system))


def write_frames(
    system: str | Path, frames: Sequence[int], target: Path, type_map: Sequence[str] | None = None
) -> None:
    """Write the given frames (indices over the system's sets in order) of a deepmd/npy system to
    ``target``: every ``.npy`` array of each set, sliced to the chosen frames of that set, under the set's
    own name (sets with none chosen are left out); the files beside the sets copied, and ``type_map`` (when
    given) written as ``type_map.raw``."""
    source = Path(system)
    target.mkdir(parents=True)
    for entry in source.iterdir():
        if entry.is_file() and not (type_map and entry.name == "type_map.raw"):
            shutil.copyfile(entry, target / entry.name)
    if type_map:
        (target / "type_map.raw").write_text("\n".join(type_map) + "\n")
    chosen = np.asarray(sorted(frames), dtype=np.int64)
    start = 0
    for set_dir in _sets(source):
        count = _set_frames(set_dir)
        here = chosen[(chosen >= start) & (chosen < start + count)] - start
        start += count
        if not here.size:
            continue
        out = target / set_dir.name
        out.mkdir()
        for array_file in sorted(set_dir.glob("*.npy")):
            array = np.load(array_file, mmap_mode="r", allow_pickle=False)
            if array.ndim and array.shape[0] == count:
                np.save(out / array_file.name, np.ascontiguousarray(array[here]))
            else:  # not one row per frame: copied as it is
                shutil.copyfile(array_file, out / array_file.name)


def _publish(scratch: Path, folder: Path, record_file: Path, record: dict) -> None:
    """Write the record into ``scratch`` last, then rename it to ``folder`` (a folder is whole or absent);
    when another validate published the same content first, keep theirs."""
    (scratch / record_file.name).write_text(json.dumps(record, indent=1) + "\n")
    try:
        os.replace(scratch, folder)
    except OSError:
        if not record_file.is_file():
            raise
        shutil.rmtree(scratch, ignore_errors=True)


def subset_indices(nframes: Sequence[int], size: int, repeat: int, seed: int) -> list[list[int]]:
    """``size`` frames drawn from systems of ``nframes`` frames each, as sorted indices per system.

    One random order of all frames per (seed, repeat); a subset is its first ``size`` frames, so the
    subsets of one repeat are nested (a learning curve adds data, it does not swap it)."""
    total = sum(nframes)
    if not 0 < size <= total:
        raise ValueError(f"{size} frames asked for, the train part has {total}")
    order = np.random.default_rng([seed, repeat]).permutation(total)[:size]
    starts = np.cumsum([0, *nframes])
    chosen: list[list[int]] = [[] for _ in nframes]
    for flat in sorted(int(i) for i in order):
        system = int(np.searchsorted(starts, flat, side="right")) - 1
        chosen[system].append(flat - int(starts[system]))
    return chosen


def write_subset(systems: Sequence[str], size: int, repeat: int, seed: int, root: Path) -> tuple[Path, dict]:
    """``root/<digest>`` holding the systems' chosen frames (deepmd/npy, systems with none left out) and
    ``subset.json``; written once, reused after. Returns (folder, {system folder name: [frame...]})."""
    record = {"layout": 3, "systems": [content_digest(s) for s in systems], "size": size, "repeat": repeat,
              "seed": seed}  # fmt: skip
    folder = root / hashlib.sha256(json.dumps(record, sort_keys=True).encode()).hexdigest()[:32]
    record_file = folder / "subset.json"
    if record_file.is_file():
        return folder, json.loads(record_file.read_text())["systems"]
    chosen = subset_indices([system_frames(s) for s in systems], size, repeat, seed)
    root.mkdir(parents=True, exist_ok=True)
    scratch = Path(tempfile.mkdtemp(prefix=".subset-", dir=root))
    try:
        for n, (system, frames) in enumerate(zip(systems, chosen, strict=True)):
            if frames:
                write_frames(system, frames, scratch / f"{n:04d}-{Path(system).name}")
        indices = {Path(s).name: f for s, f in zip(systems, chosen, strict=True) if f}
        _publish(
            scratch, folder, record_file, {"size": size, "repeat": repeat, "seed": seed, "systems": indices}
        )
    except BaseException:
        shutil.rmtree(scratch, ignore_errors=True)
        raise
    return folder, indices
