"""A fake DFT code for the fast tier's command labeler tests: reads ``POSCAR``, labels it with a
Lennard-Jones potential (ASE's ``LennardJones(sigma=0.8, epsilon=0.01, rc=3.0)``: each pair's energy
shifted to zero at the cut-off, periodic images included), writes ``out.xyz`` (extended XYZ with energy and
forces). NumPy only, so that each "SCF" starts in a tenth of a second; ``tests/ops/labeling/test_command.py``
checks its labels against ASE's own calculator. Knobs: ``FAKE_DFT_FAIL=1`` exits 3 after printing an error;
``FAKE_DFT_NO_OUTPUT=1`` exits 0 without output; ``FAKE_DFT_ATOMS=N`` labels only the first N atoms (an
output that does not match its input)."""

from __future__ import annotations

import itertools
import os
import sys

import numpy as np

SIGMA, EPSILON, CUTOFF = 0.8, 0.01, 3.0


def read_poscar(path: str) -> tuple[list[str], np.ndarray, np.ndarray]:
    """(symbols, cell, Cartesian positions) of a VASP 5 POSCAR."""
    lines = open(path).read().splitlines()
    scale = float(lines[1].split()[0])
    cell = np.array([[float(x) for x in lines[i].split()[:3]] for i in (2, 3, 4)]) * scale
    names, counts = lines[5].split(), [int(n) for n in lines[6].split()]
    symbols = [name for name, count in zip(names, counts, strict=True) for _ in range(count)]
    first = 8 if lines[7].strip()[:1].lower() != "s" else 9  # "Selective dynamics" adds a line
    direct = lines[first - 1].strip()[:1].lower() == "d"
    positions = np.array([[float(x) for x in lines[first + i].split()[:3]] for i in range(len(symbols))])
    return symbols, cell, (positions @ cell if direct else positions * scale)


def lennard_jones(cell: np.ndarray, positions: np.ndarray) -> tuple[float, np.ndarray]:
    """Energy (eV) and forces (eV/Å) summed over every pair within the cut-off, periodic images included."""
    shift = 4 * EPSILON * ((SIGMA / CUTOFF) ** 12 - (SIGMA / CUTOFF) ** 6)
    heights = np.abs(np.linalg.det(cell)) / np.linalg.norm(np.cross(cell[[1, 2, 0]], cell[[2, 0, 1]]), axis=1)
    reach = [int(np.ceil(CUTOFF / h)) for h in heights]
    fractional = positions @ np.linalg.inv(cell)
    positions = (fractional - np.floor(fractional)) @ cell  # wrapped, so that images up to `reach` suffice
    energy, forces = 0.0, np.zeros_like(positions)
    for image in itertools.product(*(range(-n, n + 1) for n in reach)):
        vectors = positions[None, :, :] + np.array(image) @ cell - positions[:, None, :]  # i -> image of j
        r2 = np.einsum("ijk,ijk->ij", vectors, vectors)
        inside = (r2 < CUTOFF**2) & (r2 > 1e-12)
        safe_r2 = np.where(inside, r2, 1.0)
        inverse6 = np.where(inside, (SIGMA**2 / safe_r2) ** 3, 0.0)
        energy += 0.5 * float(np.sum(np.where(inside, 4 * EPSILON * (inverse6**2 - inverse6) - shift, 0.0)))
        magnitude = np.where(inside, 24 * EPSILON * (2 * inverse6**2 - inverse6) / safe_r2, 0.0)
        forces -= np.einsum("ij,ijk->ik", magnitude, vectors)
    return energy, forces


def write_extxyz(path: str, symbols: list[str], cell: np.ndarray, positions: np.ndarray,
                 energy: float, forces: np.ndarray) -> None:  # fmt: skip
    lattice = " ".join(f"{x:.10f}" for x in cell.reshape(-1))
    lines = [str(len(symbols)), f'Lattice="{lattice}" Properties=species:S:1:pos:R:3:forces:R:3 '
             f'energy={energy:.12f} pbc="T T T"']  # fmt: skip
    for symbol, position, force in zip(symbols, positions, forces, strict=True):
        lines.append(f"{symbol} " + " ".join(f"{x:.10f}" for x in (*position, *force)))
    with open(path, "w") as out:
        out.write("\n".join(lines) + "\n")


if __name__ == "__main__":
    print("fake-dft: reading POSCAR")
    if os.environ.get("FAKE_DFT_FAIL"):
        print("fake-dft: ERROR: SCF did not converge in 60 steps")
        sys.exit(3)
    symbols, cell, positions = read_poscar("POSCAR")
    if os.environ.get("FAKE_DFT_ATOMS"):
        keep = int(os.environ["FAKE_DFT_ATOMS"])
        symbols, positions = symbols[:keep], positions[:keep]
    energy, forces = lennard_jones(cell, positions)
    if not os.environ.get("FAKE_DFT_NO_OUTPUT"):
        write_extxyz("out.xyz", symbols, cell, positions, energy, forces)
    print("fake-dft: done")
