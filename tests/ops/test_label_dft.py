"""The DFT-label step in-process: picked frames labelled by real PySCF (water and H2, STO-3G) or by an
external code (tests/fake_dft.py), one deepmd/npy system per composition in the spec's type map; frames
that fail are counted, and a step that labels nothing fails with the counts and the reasons."""

from __future__ import annotations

import json
import shlex
import sys
from pathlib import Path

import numpy as np
import pytest
from dflow.python import FatalError

from lamflow.ops.label_dft import CommandParams, LabelDftOP, LabelDftParams, PyscfParams
from lamflow.ops.select_frames import PICKED
from tests.conftest import DEMO_DATA
from tests.ops.labeling.test_command import FAKE_DFT
from tests.ops.labeling.test_pyscf_dft import WATER

TYPE_MAP = ["O", "H", "C"]


def picked(tmp_path: Path, frames: list) -> Path:
    from ase.io import write

    folder = tmp_path / "picked"
    folder.mkdir()
    write(folder / PICKED, frames, format="extxyz")
    return folder


def molecules() -> list:
    from ase import Atoms

    return [
        Atoms("OH2", positions=WATER),
        Atoms("OH2", positions=WATER + np.array([0.0, 0.03, 0.0])),
        Atoms("H2", positions=[[0, 0, 0], [0, 0, 0.74]]),
    ]


def test_pyscf_labels_each_composition_into_a_system_of_its_own(run_op, tmp_path):
    import dpdata

    params = LabelDftParams(labeler="pyscf", pyscf=PyscfParams(basis="sto-3g"), type_map=TYPE_MAP)
    out = run_op(LabelDftOP, params, picked=picked(tmp_path, molecules()))
    assert out.report["frames"] == out.report["labelled"] == 3 and out.report["failed"] == 0
    systems = sorted(p for p in out.labels.iterdir() if p.is_dir())
    loaded = [dpdata.LabeledSystem(str(p), fmt="deepmd/npy") for p in systems]
    assert sorted(s.get_nframes() for s in loaded) == [1, 2]
    for system in loaded:
        assert system["atom_names"] == TYPE_MAP and system.nopbc
        assert np.all(np.isfinite(system["forces"])) and np.all(system["energies"] < 0)
    assert json.loads((out.labels / "label-report.json").read_text()) == out.report


def test_an_external_code_labels_periodic_frames(run_op, tmp_path):
    import dpdata

    water = dpdata.System(str(DEMO_DATA / "water/train/data_0"), fmt="deepmd/npy").sub_system([0, 1])
    frames = water.to("ase/structure")
    command = CommandParams(
        command=f"{shlex.quote(sys.executable)} {shlex.quote(str(FAKE_DFT))}",
        input_format="vasp/poscar", input_file="POSCAR", output_format="extxyz", output_file="out.xyz",
    )  # fmt: skip
    params = LabelDftParams(labeler="command", command=command, type_map=TYPE_MAP)
    out = run_op(LabelDftOP, params, picked=picked(tmp_path, frames))
    assert out.report["labelled"] == 2 and out.report["failed"] == 0
    labelled = dpdata.MultiSystems(type_map=TYPE_MAP).from_deepmd_npy(str(out.labels / "system-000"))
    assert (
        labelled.get_nframes() == 2
        and labelled.systems[next(iter(labelled.systems))]["atom_names"] == TYPE_MAP
    )


def test_a_step_that_labels_nothing_fails_with_the_counts_and_reasons(run_op, tmp_path):
    params = LabelDftParams(labeler="pyscf", pyscf=PyscfParams(basis="sto-3g", spin=1), type_map=TYPE_MAP)
    with pytest.raises(
        FatalError,
        match=r"none of 3 frames labelled \(0 SCFs did not converge, 3 failed\): H2 frame 0: RuntimeError: "
        r"Electron number 2 and spin 1 are not consistent Note",
    ):
        run_op(LabelDftOP, params, picked=picked(tmp_path, molecules()))


def test_pyscf_refuses_frames_with_a_cell(run_op, tmp_path):
    from ase import Atoms

    boxed = Atoms("OH2", positions=WATER, cell=[10, 10, 10], pbc=True)
    params = LabelDftParams(labeler="pyscf", type_map=TYPE_MAP)
    with pytest.raises(FatalError, match="labels molecules"):
        run_op(LabelDftOP, params, picked=picked(tmp_path, [boxed]))


def test_the_teacher_labels_every_frame_with_its_predictions(run_op, tmp_path):
    """Distillation in the loop: the labels are a frozen model's energy and forces, every frame."""
    import dpdata

    from lamflow.ops.dp import deep_potential
    from tests.fake_dp import save_frozen

    teacher = tmp_path / "teacher.pth"
    save_frozen(teacher, {"type_map": TYPE_MAP, "name": "teacher"}, frozen_by_freeze=True)
    frames = molecules()
    out = run_op(
        LabelDftOP, LabelDftParams(labeler="teacher", type_map=TYPE_MAP), picked=picked(tmp_path, frames),
        teacher=teacher,
    )  # fmt: skip
    assert out.report["labelled"] == out.report["frames"] == 3
    water = next(p for p in out.labels.iterdir() if p.is_dir() and "H2O1" in p.name)
    system = dpdata.LabeledSystem(str(water), fmt="deepmd/npy")
    types = np.array([TYPE_MAP.index(s) for s in ("O", "H", "H")])
    energy, force, _ = deep_potential(teacher).eval(frames[0].positions.reshape(1, -1), None, types)[:3]
    assert np.allclose(system["energies"][0], energy.ravel()[0]) and np.allclose(
        system["forces"][0], force[0]
    )
    (tmp_path / "b").mkdir()
    with pytest.raises(FatalError, match="needs its teacher"):
        run_op(
            LabelDftOP,
            LabelDftParams(labeler="teacher", type_map=TYPE_MAP),
            picked=picked(tmp_path / "b", frames),
        )


def test_label_steps_share_the_picks_and_the_merge_gathers_them(run_op, tmp_path):
    """Fan-out: step k of n labels frames k-1, k-1+n ...; the merge takes every step's labels, keeps them
    apart by step (i001-s<k>-...), and sums their reports into this iteration's labels."""
    import dpdata

    from lamflow.ops.merge_labels import MergeLabelsOP, MergeLabelsParams
    from tests.fake_dp import save_frozen

    teacher = tmp_path / "teacher.pth"
    save_frozen(teacher, {"type_map": TYPE_MAP, "name": "teacher"}, frozen_by_freeze=True)
    folder = picked(tmp_path, molecules())  # water, water (shifted), H2
    shares = []
    for share in (1, 2):
        params = LabelDftParams(labeler="teacher", type_map=TYPE_MAP, share=share, shares=2)
        shares.append(run_op(LabelDftOP, params, picked=folder, teacher=teacher))
    assert [s.report["frames"] for s in shares] == [2, 1] and shares[1].report["share"] == "2/2"
    merged = run_op(
        MergeLabelsOP, MergeLabelsParams(parts=2), labels=shares[0].labels, labels2=shares[1].labels
    )
    names = sorted(p.name for p in merged.labelled.iterdir())
    assert names and all(n.startswith(("i001-s1-", "i001-s2-")) for n in names)
    assert {n[:8] for n in names} == {"i001-s1-", "i001-s2-"}
    assert merged.report["frames_added"] == 3
    report = json.loads((merged.labels / "label-report.json").read_text())
    assert report["frames"] == report["labelled"] == 3 and report["steps"] == 2
    water = [
        dpdata.LabeledSystem(str(p), fmt="deepmd/npy") for p in merged.labelled.iterdir() if "H2O1" in p.name
    ]
    assert sum(s.get_nframes() for s in water) == 2  # one water frame from each step
    with pytest.raises(FatalError, match="2 label steps expected"):
        run_op(MergeLabelsOP, MergeLabelsParams(parts=2), labels=shares[0].labels)
    with pytest.raises(FatalError, match="share 3 of 2 does not exist"):
        params = LabelDftParams(labeler="teacher", type_map=TYPE_MAP, share=3, shares=2)
        run_op(LabelDftOP, params, picked=folder, teacher=teacher)
