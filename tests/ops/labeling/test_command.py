"""The command labeler against a fake DFT code (tests/fake_dft.py: ASE's Lennard-Jones on a POSCAR, written
as extended XYZ): frames go out in the code's input format beside the template, labels come back in eV
and eV/Å, and every way a frame can fail is counted with its reason."""

from __future__ import annotations

import shlex
import sys
from pathlib import Path

import numpy as np
import pytest

from lamflow.ops.labeling.command import CommandLabeler, label_frames
from tests.conftest import DEMO_DATA

FAKE_DFT = Path(__file__).resolve().parents[2] / "fake_dft.py"


@pytest.fixture
def frames():
    import dpdata

    return dpdata.System(str(DEMO_DATA / "water/train/data_0"), fmt="deepmd/npy").sub_system([0, 1])


@pytest.fixture
def labeler(tmp_path):
    template = tmp_path / "template"
    template.mkdir()
    (template / "INCAR").write_text("ENCUT = 400\n")
    return CommandLabeler(
        command=f"{shlex.quote(sys.executable)} {shlex.quote(str(FAKE_DFT))}",
        input_format="vasp/poscar", input_file="POSCAR",
        output_format="extxyz", output_file="out.xyz",
        template=template,
    )  # fmt: skip


def test_frames_are_labelled_by_the_command_in_folders_of_their_own(frames, labeler, tmp_path):
    from ase import Atoms
    from ase.calculators.lj import LennardJones

    labels = label_frames(frames, labeler, tmp_path / "work")
    assert labels.counts == {"labelled": 2, "failed": 0} and labels.frames == [0, 1] and not labels.errors
    for index, labelled in zip(labels.frames, labels.systems, strict=True):
        folder = tmp_path / "work" / f"frame-{index:05d}"
        assert (folder / "INCAR").read_text() == "ENCUT = 400\n" and (folder / "POSCAR").is_file()
        symbols = [frames["atom_names"][t] for t in frames["atom_types"]]
        atoms = Atoms(symbols, positions=frames["coords"][index], cell=frames["cells"][index], pbc=True)
        atoms.calc = LennardJones(sigma=0.8, epsilon=0.01, rc=3.0)
        assert labelled["energies"][0] == pytest.approx(atoms.get_potential_energy(), rel=1e-6)
        np.testing.assert_allclose(
            labelled["forces"][0], _forces_in_order(labelled, atoms), rtol=1e-5, atol=1e-6
        )
        assert np.abs(labelled["forces"][0]).max() > 1e-4  # real forces, not zeros that match anything


def _forces_in_order(labelled, atoms):
    """ASE's forces in the order dpdata read the atoms back (POSCAR groups atoms by element): each read-back
    atom matched to the nearest original position."""
    distance = np.linalg.norm(labelled["coords"][0][:, None, :] - atoms.positions[None, :, :], axis=-1)
    return atoms.get_forces()[distance.argmin(axis=1)]


@pytest.mark.parametrize(
    ("setting", "reason"),
    [
        (
            {"FAKE_DFT_FAIL": "1"},
            "exited with 3: fake-dft: reading POSCAR | fake-dft: ERROR: SCF did not converge in 60 steps",
        ),
        ({"FAKE_DFT_NO_OUTPUT": "1"}, "wrote no out.xyz: fake-dft: reading POSCAR | fake-dft: done"),
    ],
)
def test_a_failing_code_is_counted_with_its_reason(frames, labeler, tmp_path, monkeypatch, setting, reason):
    for key, value in setting.items():
        monkeypatch.setenv(key, value)
    labels = label_frames(frames.sub_system([0]), labeler, tmp_path / "work")
    assert labels.counts == {"labelled": 0, "failed": 1} and not labels.systems
    assert labels.errors[0] == f"frame 0: `{labeler.command}` {reason}"


def test_a_slow_code_a_foreign_output_and_a_wrong_atom_count_fail_their_frame(frames, labeler, tmp_path):
    from dataclasses import replace

    slow = label_frames(
        frames.sub_system([0]), replace(labeler, command="sleep 5", timeout_s=0.2), tmp_path / "a"
    )
    assert slow.counts["failed"] == 1 and "no labels after 0.2 s (timeout_s)" in slow.errors[0]
    foreign = label_frames(
        frames.sub_system([0]), replace(labeler, output_format="vasp/outcar"), tmp_path / "b"
    )
    assert foreign.counts["failed"] == 1 and "out.xyz is not vasp/outcar" in foreign.errors[0]
    fewer = label_frames(
        frames.sub_system([0]),
        replace(labeler, command=f"FAKE_DFT_ATOMS=1 {labeler.command}"),
        tmp_path / "c",
    )
    assert fewer.counts["failed"] == 1 and "out.xyz has 1 atoms" in fewer.errors[0]
