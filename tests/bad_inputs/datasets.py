"""The malformed-dataset corpus: each case breaks a copy of the bundled GeTe training system one way.

Each entry: (name, breakage, message fragment). ``make_broken(tmp, breakage)`` returns the dataset path
to give a spec (or `lamflow data check`); every case must be refused with exit 2 naming the bad file.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable
from pathlib import Path

import numpy as np

from tests.conftest import DEMO_DATA

SOURCE = DEMO_DATA / "gete/train/gete"


def _set(system: Path) -> Path:
    return system / "set.000"


def _edit(name: str, change: Callable[[np.ndarray], np.ndarray]) -> Callable[[Path], None]:
    def apply(system: Path) -> None:
        path = _set(system) / f"{name}.npy"
        np.save(path, change(np.load(path)), allow_pickle=True)

    return apply


def _nan_at(a: np.ndarray) -> np.ndarray:
    a = a.astype(float).copy()
    a.reshape(-1)[5] = np.nan
    return a


def _inf_at(a: np.ndarray) -> np.ndarray:
    a = a.astype(float).copy()
    a.reshape(-1)[7] = np.inf
    return a


def _write(relative: str, content: bytes) -> Callable[[Path], None]:
    def apply(system: Path) -> None:
        (system / relative).write_bytes(content)

    return apply


def _remove(relative: str) -> Callable[[Path], None]:
    def apply(system: Path) -> None:
        target = system / relative
        shutil.rmtree(target) if target.is_dir() else target.unlink()

    return apply


def _zero_frames(system: Path) -> None:
    for name in ("coord", "force", "energy", "box"):
        path = _set(system) / f"{name}.npy"
        np.save(path, np.load(path)[:0])


def _real_atom_types_out_of_range(system: Path) -> None:
    coord = np.load(_set(system) / "coord.npy")
    natoms = coord.shape[1] // 3
    np.save(_set(system) / "real_atom_types.npy", np.full((coord.shape[0], natoms), 7, dtype=np.int64))


def _link_out(system: Path) -> None:
    """The dataset folder holds only a link to a system outside it (never followed)."""
    outside = system.parent.parent / "elsewhere"
    shutil.move(str(system), outside)
    os.symlink(outside, system)


CASES: list[tuple[str, Callable[[Path], None], str]] = [
    ("energy-nan", _edit("energy", _nan_at), "energy.npy: non-finite value nan"),
    ("force-inf", _edit("force", _inf_at), "force.npy: non-finite value inf"),
    ("coord-nan", _edit("coord", _nan_at), "coord.npy: non-finite value nan"),
    ("force-fewer-frames", _edit("force", lambda a: a[:-2]), "force.npy: 22 frames but coord has 24"),
    ("box-wrong-shape", _edit("box", lambda a: a[:, :3]), "box.npy: shape (24, 3), expected (24, 9)"),
    ("coord-as-strings", _edit("coord", lambda a: a.astype(str)), "coord.npy: holds <U"),
    ("force-complex", _edit("force", lambda a: a.astype(complex)), "force.npy: holds complex128 values"),
    ("coord-objects", _edit("coord", lambda a: a.astype(object)), "coord.npy: not a readable .npy array"),
    ("virial-wrong-shape", _write("set.000/virial.npy", b""), "virial.npy: not a readable .npy array"),
    ("zero-frames", _zero_frames, "no frames"),
    ("type-negative", _write("type.raw", b"0\n-1\n" + b"0\n" * 214), "type.raw: negative type index -1"),
    ("type-beyond-type-map", _write("type.raw", b"0\n5\n" + b"1\n" * 214), "type index 5 but type_map.raw names"),
    ("type-not-integers", _write("type.raw", b"Ge\nTe\n"), "type.raw: not a list of integers"),
    ("type-empty", _write("type.raw", b""), "type.raw: empty"),
    ("type-map-not-utf8", _write("type_map.raw", b"Ge\n\xff\xfeTe\n"), "type_map.raw: not UTF-8 text"),
    ("energy-missing", _remove("set.000/energy.npy"), "energy.npy: missing"),
    ("coord-garbage", _write("set.000/coord.npy", b"not numpy at all"), "coord.npy: not a readable .npy array"),
    ("no-set-folder", _remove("set.000"), "no set.* directory"),
    ("real-atom-types-out-of-range", _real_atom_types_out_of_range, "real_atom_types.npy: type index 7"),
    ("link-out-of-dataset", _link_out, "no deepmd/npy system found"),
]  # fmt: skip


def make_broken(tmp: Path, breakage: Callable[[Path], None]) -> Path:
    """A dataset folder holding one broken copy of the GeTe system; returns the folder."""
    dataset = tmp / "dataset"
    shutil.copytree(SOURCE, dataset / "gete")
    breakage(dataset / "gete")
    return dataset


def make_hdf5_without_coord(tmp: Path) -> Path:
    import h5py

    path = tmp / "nocoord.hdf5"
    with h5py.File(path, "w") as h5:
        h5["type.raw"] = np.zeros(4, dtype=np.int64)
        h5["type_map.raw"] = np.array([b"Ge"])
        h5.create_group("set.000")["energy.npy"] = np.zeros(2)
    return path
