"""Regenerate the active-learning example's bundled data: methanol (CH3OH) labelled with PySCF, PBE/6-31G
(energies and forces; the same method the example's labeler uses, so every label of a run is one level of
theory).

- ``methanol/train``: 8 frames, atoms displaced at random (Gaussian, 0.03 Å) from ASE's g2 geometry — a
  narrow start, as a user with a few DFT frames near the minimum would have;
- ``methanol/test``: 16 frames displaced by 0.06 Å — what MD at a few hundred kelvin visits; held out.

Both are written in the type map C, H, O. Made by lamflow (no third-party data): ASE's g2 geometry, PySCF's
labels. Takes about a minute on 2 cores. Run from the repository root:
``python examples/data/make_methanol.py``
"""

from pathlib import Path

import numpy as np
from ase.build import molecule

from lamflow.ops.labeling.pyscf_dft import PyscfSettings, label_frames, write_system

HERE = Path(__file__).resolve().parent
SETTINGS = PyscfSettings(functional="pbe", basis="6-31g")
TYPE_MAP = ["C", "H", "O"]
SETS = {"train": (8, 0.03, 1), "test": (16, 0.06, 2)}  # frames, displacement (Å), seed


def main() -> None:
    atoms = molecule("CH3OH")
    symbols = tuple(atoms.get_chemical_symbols())
    for name, (frames, sigma, seed) in SETS.items():
        rng = np.random.default_rng(seed)
        coords = [atoms.positions + rng.normal(0.0, sigma, atoms.positions.shape) for _ in range(frames)]
        labels = label_frames(symbols, coords, SETTINGS)
        if labels.counts["labelled"] != frames:
            raise SystemExit(f"{name}: {labels.counts} ({labels.errors})")
        target = HERE / "methanol" / name / "CH3OH"
        write_system(target, symbols, coords, labels, TYPE_MAP)
        largest = max(abs(label.forces).max() for label in labels.labels)
        print(f"{target}: {frames} frames, max |F| {largest:.2f} eV/Å")


if __name__ == "__main__":
    main()
