"""Train/test splits of a deepmd/npy dataset, per system, by fraction or count, with a seed: the frame
indices (pure, reproducible) and the two parts written once into a content-addressed folder with dpdata
(``<root>/<digest>/{train,test}/<system>``, plus ``split.json`` recording every index)."""

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

from lamflow.ops.data import system_digest

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


def split_key(systems: Sequence[str], rule: SplitRule, type_map: Sequence[str] | None) -> str:
    """The digest naming a split's folder: the systems' frames, the rule and the type map."""
    record = {
        "systems": [system_digest(s) for s in systems],
        "rule": [rule.test_fraction, rule.test_frames, rule.seed],
        "type_map": list(type_map) if type_map else None,
    }
    return hashlib.sha256(json.dumps(record, sort_keys=True).encode()).hexdigest()[:32]


def write_split(
    systems: Sequence[str], rule: SplitRule, type_map: Sequence[str] | None, root: Path
) -> tuple[Path, dict[str, dict[str, list[int]]]]:
    """``root/<digest>`` holding ``train/`` and ``test/`` (one folder per system, as in the source) and
    ``split.json``; written once (temporary name, then rename), reused after. Returns (folder, indices)."""
    import dpdata

    folder = root / split_key(systems, rule, type_map)
    record_file = folder / "split.json"
    if record_file.is_file():
        return folder, json.loads(record_file.read_text())["systems"]
    root.mkdir(parents=True, exist_ok=True)
    scratch = Path(tempfile.mkdtemp(prefix=".split-", dir=root))
    indices: dict[str, dict[str, list[int]]] = {}
    try:
        for n, system in enumerate(systems):
            data = dpdata.LabeledSystem(
                system, fmt="deepmd/npy", type_map=list(type_map) if type_map else None
            )
            train, test = split_indices(data.get_nframes(), rule, n)
            name = f"{n:04d}-{Path(system).name}"
            for part, chosen in zip(PARTS, (train, test), strict=True):
                data.sub_system(chosen).to("deepmd/npy", str(scratch / part / name))
            indices[system] = {"train": train, "test": test}
        (scratch / "split.json").write_text(
            json.dumps({"rule": rule.__dict__, "systems": indices}, indent=1) + "\n"
        )
        try:
            os.replace(scratch, folder)
        except OSError:  # another validate wrote the same split first
            if not record_file.is_file():
                raise
            shutil.rmtree(scratch, ignore_errors=True)
    except BaseException:
        shutil.rmtree(scratch, ignore_errors=True)
        raise
    return folder, indices
