"""Regenerate the demo's bundled data: small slices of ../shared/data/datasets (deepmd/npy, LGPL-3.0).

Source: deepmodeling/deepmd-kit @ bc902daf7 (examples/water/data, examples/nopbc/data, examples/nvnmd/data),
as copied into lamflow's shared/data/datasets. See LICENSE.deepmd-kit.LGPL-3.0.txt beside this file.
Run from the repository root:  python examples/data/make_subset.py ../shared/data/datasets
"""

import shutil
import sys
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent

GETE_TEST = list(range(2, 36, 3))  # every third frame: the GeTe data are two trajectory segments
GETE_TRAIN = [i for i in range(36) if i not in GETE_TEST]

# (source system, destination system, frame indices)
SLICES = [
    ("water_h2o/data_0", "water/train/data_0", list(range(12))),
    ("water_h2o/data_2", "water/train/data_2", list(range(12))),
    ("water_h2o/data_3", "water/valid/data_3", list(range(4))),
    ("molecules_cho/C1H4O2", "molecules/train/C1H4O2", list(range(40))),
    ("molecules_cho/C3H3O4", "molecules/train/C3H3O4", list(range(40))),
    ("gete/.", "gete/train/gete", GETE_TRAIN),
    ("gete/.", "gete/test/gete", GETE_TEST),
]


def copy_slice(src: Path, dst: Path, frames: list[int]) -> None:
    dst.mkdir(parents=True, exist_ok=True)
    for name in ("type.raw", "type_map.raw", "nopbc"):
        if (src / name).exists():
            shutil.copy(src / name, dst / name)
    (dst / "set.000").mkdir(exist_ok=True)
    for npy in sorted((src / "set.000").glob("*.npy")):
        np.save(dst / "set.000" / npy.name, np.load(npy)[frames])


def main(shared: str) -> None:
    for src, dst, frames in SLICES:
        copy_slice(Path(shared) / src, HERE / dst, frames)


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "../shared/data/datasets")
