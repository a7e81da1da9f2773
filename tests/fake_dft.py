"""A fake DFT code for the fast tier's command labeler tests: reads ``POSCAR`` with ASE, labels it with a
Lennard-Jones potential (ASE's), writes ``out.xyz`` (extended XYZ with energy and forces). Knobs:
``FAKE_DFT_FAIL=1`` exits 3 after printing an error; ``FAKE_DFT_NO_OUTPUT=1`` exits 0 without output;
``FAKE_DFT_ATOMS=N`` labels only the first N atoms (an output that does not match its input)."""

from __future__ import annotations

import os
import sys

from ase.calculators.lj import LennardJones
from ase.calculators.singlepoint import SinglePointCalculator
from ase.io import read, write

print("fake-dft: reading POSCAR")
if os.environ.get("FAKE_DFT_FAIL"):
    print("fake-dft: ERROR: SCF did not converge in 60 steps")
    sys.exit(3)
atoms = read("POSCAR", format="vasp")
if os.environ.get("FAKE_DFT_ATOMS"):
    atoms = atoms[: int(os.environ["FAKE_DFT_ATOMS"])]
atoms.calc = LennardJones(sigma=0.8, epsilon=0.01, rc=3.0)
energy, forces = atoms.get_potential_energy(), atoms.get_forces()
atoms.calc = SinglePointCalculator(atoms, energy=energy, forces=forces)  # what a DFT code reports
if not os.environ.get("FAKE_DFT_NO_OUTPUT"):
    write("out.xyz", atoms, format="extxyz")
print("fake-dft: done")
