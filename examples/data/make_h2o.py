"""Regenerate the active-learning example's bundled data: one water molecule (H2O) labelled with PySCF,
PBE/6-31G (energies and forces; the method the example's labeler uses, so every label of a run is one level
of theory).

- the geometry is first relaxed at that level (ASE's BFGS on PySCF forces, to 0.01 eV/Å), so that the start
  data sit near this method's own minimum, not ASE's g2 geometry;
- ``h2o/train``: 8 frames, atoms displaced at random (Gaussian, 0.02 Å) from the minimum — a narrow start,
  as a user with a few DFT frames near the minimum would have;
- ``h2o/test``: 20 frames of a DFT molecular dynamics at 500 K from the minimum — lamflow's own MD
  (``ops/dynamics/md.py``: Langevin, 0.5 fs, the explore stage's friction) on PySCF forces, one frame every
  20 steps after 100 steps — what MD at a few hundred kelvin visits; held out.

Both are written in the type map C, H, O. Made by lamflow (no third-party data): ASE's g2 geometry, PySCF's
labels and dynamics. Takes about 5 minutes on 2 cores. Run from the repository root:
``python examples/data/make_h2o.py``
"""

from pathlib import Path
from typing import Any

import numpy as np
from ase.build import molecule
from ase.calculators.calculator import Calculator, all_changes
from ase.optimize import BFGS

from lamflow.ops.dynamics.md import run_md
from lamflow.ops.labeling.pyscf_dft import (
    Label,
    Labels,
    PyscfSettings,
    label_frame,
    label_frames,
    write_system,
)

HERE = Path(__file__).resolve().parent
SETTINGS = PyscfSettings(functional="pbe", basis="6-31g")
TYPE_MAP = ["C", "H", "O"]
TRAIN_FRAMES, TRAIN_SIGMA = 8, 0.02  # Å
MD_KELVIN, MD_FS, MD_EQUILIBRATE, MD_EVERY, TEST_FRAMES = 500.0, 0.5, 100, 20, 20
MD_SEED = 2


class PyscfCalculator(Calculator):  # type: ignore[misc]
    """ASE's view of :func:`label_frame`: energy and forces of one molecule."""

    implemented_properties = ["energy", "forces"]

    def calculate(
        self, atoms: Any = None, properties: Any = ("energy",), system_changes: Any = all_changes
    ) -> None:
        super().calculate(atoms, properties, system_changes)
        label = label_frame(self.atoms.get_chemical_symbols(), self.atoms.positions, SETTINGS)
        if label is None:
            raise RuntimeError("PySCF's SCF did not converge")
        self.results = {"energy": label.energy, "forces": label.forces}


def write(
    name: str, symbols: tuple[str, ...], coords: list[np.ndarray], labels: Labels | None = None
) -> None:
    labels = labels or label_frames(symbols, coords, SETTINGS)
    if labels.counts["labelled"] != len(coords):
        raise SystemExit(f"{name}: {labels.counts} ({labels.errors})")
    target = HERE / "h2o" / name / "H2O"
    write_system(target, symbols, coords, labels, TYPE_MAP)
    forces = np.array([label.forces for label in labels.labels])
    rms, largest = float(np.sqrt((forces**2).mean())), float(abs(forces).max())
    print(f"{target}: {len(coords)} frames, force RMS {rms:.3f} eV/Å, max |F| {largest:.2f} eV/Å")


def main() -> None:
    atoms = molecule("H2O")
    symbols = tuple(atoms.get_chemical_symbols())
    atoms.calc = PyscfCalculator()
    BFGS(atoms, logfile=None).run(fmax=0.01)
    minimum = atoms.positions.copy()
    rng = np.random.default_rng(1)
    write(
        "train", symbols, [minimum + rng.normal(0.0, TRAIN_SIGMA, minimum.shape) for _ in range(TRAIN_FRAMES)]
    )
    md = run_md(
        atoms, PyscfCalculator(), ensemble="nvt", temperature=MD_KELVIN,
        steps=MD_EQUILIBRATE + MD_EVERY * TEST_FRAMES, timestep_fs=MD_FS, dump_every=MD_EVERY, min_dist=0.5,
        seed=MD_SEED,
    )  # fmt: skip
    if md.reason is not None:
        raise SystemExit(f"DFT MD stopped at step {md.exploded_at}: {md.reason}")
    visited = [frame for frame in md.frames if frame.info["md_step"] > MD_EQUILIBRATE]
    labels = Labels(
        frames=list(range(len(visited))),
        labels=[Label(energy=f.get_potential_energy(), forces=f.get_forces()) for f in visited],
        counts={"labelled": len(visited), "not_converged": 0, "failed": 0},
    )
    write("test", symbols, [frame.positions.copy() for frame in visited], labels)


if __name__ == "__main__":
    main()
