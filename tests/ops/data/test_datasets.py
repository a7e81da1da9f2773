"""Dataset inspection (deepmd/npy, deepmd/hdf5) and the system lists handed to dp."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest

from lamflow.ops.data.datasets import (
    DatasetError,
    find_npy_systems,
    frame_digests,
    inspect_dataset,
    shortest_distance,
    systems_for_dp,
)
from tests.conftest import DEMO_DATA, SHARED_DATASETS


def make_system(root: Path, types=(0, 0, 1), nframes=2, type_map=("O", "H"), pbc=True) -> Path:
    root.mkdir(parents=True)
    (root / "type.raw").write_text("\n".join(map(str, types)) + "\n")
    if type_map is not None:
        (root / "type_map.raw").write_text("\n".join(type_map) + "\n")
    if not pbc:
        (root / "nopbc").touch()
    s = root / "set.000"
    s.mkdir()
    natoms = len(types)
    np.save(s / "coord.npy", np.zeros((nframes, 3 * natoms)))
    np.save(s / "energy.npy", np.zeros(nframes))
    np.save(s / "force.npy", np.zeros((nframes, 3 * natoms)))
    if pbc:
        np.save(s / "box.npy", np.tile(np.eye(3).reshape(9) * 10, (nframes, 1)))
    return root


def test_demo_datasets_inspect():
    info = inspect_dataset(DEMO_DATA / "molecules/train")
    assert [Path(s.path).name for s in info.systems] == ["C1H4O2", "C3H3O4"]
    assert info.nframes == 80
    assert all(not s.pbc for s in info.systems)
    water = inspect_dataset(DEMO_DATA / "water/train")
    assert water.systems[0].elements() == ("O", "H") and water.systems[0].natoms == 192


@pytest.mark.skipif(not SHARED_DATASETS.exists(), reason="../shared not present")
def test_shared_datasets_inspect():
    water = inspect_dataset(SHARED_DATASETS / "water_h2o")
    assert len(water.systems) == 4 and water.nframes == 400
    assert inspect_dataset(SHARED_DATASETS / "gete").systems[0].elements() == ("Ge", "Te")


def test_single_system_root_and_nesting(tmp_path):
    make_system(tmp_path / "a" / "sys1")
    make_system(tmp_path / "a" / "deeper" / "sys2", nframes=3)
    assert [p.name for p in find_npy_systems(tmp_path / "a")] == ["sys2", "sys1"]
    assert inspect_dataset(tmp_path / "a").nframes == 5
    assert len(inspect_dataset(tmp_path / "a" / "sys1").systems) == 1


def test_a_folder_too_large_or_too_deep_or_the_root_is_refused_without_walking_it_all(tmp_path):
    wide = tmp_path / "wide"
    for i in range(5):
        (wide / f"d{i}").mkdir(parents=True)
    with pytest.raises(DatasetError, match=r"more than 3 files and folders .*limit: 3 entries, 16 folders"):
        find_npy_systems(wide, max_entries=3)
    deep = tmp_path / "deep" / "a" / "b" / "c"
    make_system(deep / "sys")
    with pytest.raises(DatasetError, match=r"more than 2 folders deep while looking for systems \(at .*/b\)"):
        find_npy_systems(tmp_path / "deep", max_depth=2)
    assert find_npy_systems(tmp_path / "deep", max_depth=4) == [deep / "sys"]
    with pytest.raises(DatasetError, match="^/: the file system's root is not a dataset's folder$"):
        find_npy_systems(Path("/"))


@pytest.mark.parametrize(
    ("breakage", "message"),
    [
        (lambda p: shutil.rmtree(p), "does not exist"),
        (lambda p: [f.unlink() for f in p.rglob("type.raw")], "no deepmd/npy system"),
        (lambda p: shutil.rmtree(p / "s" / "set.000"), "no set.* directory"),
        (lambda p: (p / "s" / "set.000" / "box.npy").unlink(), "box.npy: missing"),
        (lambda p: (p / "s" / "type.raw").write_text("0 x\n"), "not a list of integers"),
        (lambda p: (p / "s" / "type.raw").write_text("0 0 5\n"), "type index 5"),
        (lambda p: np.save(p / "s" / "set.000" / "coord.npy", np.zeros((2, 5))), "expected (nframes, 9)"),
        (lambda p: np.save(p / "s" / "set.000" / "energy.npy", np.zeros(7)), "7 frames but coord has 2"),
        (lambda p: (p / "s" / "set.000" / "coord.npy").write_text("garbage"), "not a readable .npy array"),
    ],
)
def test_bad_datasets_name_the_file(tmp_path, breakage, message):
    make_system(tmp_path / "d" / "s")
    breakage(tmp_path / "d")
    with pytest.raises(
        DatasetError, match=message.replace("(", r"\(").replace(")", r"\)").replace("*", r"\*")
    ):
        inspect_dataset(tmp_path / "d")


def test_file_is_not_an_npy_dataset(tmp_path):
    (tmp_path / "x.txt").write_text("x")
    with pytest.raises(DatasetError, match="not a directory"):
        inspect_dataset(tmp_path / "x.txt")
    with pytest.raises(DatasetError, match="unknown format"):
        inspect_dataset(tmp_path, "vasp/outcar")


def test_hdf5_dataset(tmp_path):
    h5py = pytest.importorskip("h5py")
    with h5py.File(tmp_path / "d.hdf5", "w") as f:
        g = f.create_group("sys1")
        g["type.raw"] = np.array([0, 1, 1])
        g["type_map.raw"] = np.array([b"O", b"H"])
        g["nopbc"] = True
        g.create_group("set.000")["coord.npy"] = np.zeros((4, 9))
        g["set.000"]["energy.npy"] = np.zeros(4)
    info = inspect_dataset(tmp_path / "d.hdf5", "deepmd/hdf5")
    assert info.nframes == 4 and info.systems[0].elements() == ("O", "H")
    (tmp_path / "bad.hdf5").write_text("not hdf5")
    with pytest.raises(DatasetError, match="not a readable HDF5"):
        inspect_dataset(tmp_path / "bad.hdf5", "deepmd/hdf5")


def test_systems_for_dp_shadows_type_map(tmp_path):
    make_system(tmp_path / "d" / "s", type_map=None)
    plain = systems_for_dp(tmp_path / "d", "deepmd/npy", None, tmp_path / "scratch")
    assert plain == [str(tmp_path / "d" / "s")]
    shadowed = systems_for_dp(tmp_path / "d", "deepmd/npy", ["Cu", "Ni"], tmp_path / "scratch")
    shadow = Path(shadowed[0])
    assert shadow.parent == tmp_path / "scratch"
    assert (shadow / "type_map.raw").read_text().split() == ["Cu", "Ni"]
    assert (shadow / "set.000").is_symlink() and (shadow / "type.raw").is_symlink()
    assert not (tmp_path / "d" / "s" / "type_map.raw").exists(), "the user's data is never modified"
    assert systems_for_dp(tmp_path / "x.hdf5", "deepmd/hdf5", None, tmp_path) == [str(tmp_path / "x.hdf5")]


def test_shortest_distance_is_the_minimum_image_distance():
    ase = pytest.importorskip("ase")
    from lamflow.ops.dynamics.md import min_distance

    rng = np.random.default_rng(3)
    cell = np.array([[5.0, 0, 0], [2.4, 4.5, 0], [1.5, 1.7, 4.0]])  # skewed: images beyond the next box
    for _ in range(5):
        positions = rng.random((12, 3)) @ cell
        atoms = ase.Atoms("H12", positions=positions, cell=cell, pbc=True)
        assert shortest_distance(positions, cell) == pytest.approx(min_distance(atoms))
        pairs = [np.linalg.norm(a - b) for i, a in enumerate(positions) for b in positions[i + 1 :]]
        assert shortest_distance(positions, None) == pytest.approx(min(pairs))
    assert shortest_distance(np.zeros((1, 3)), None) == float("inf")


def test_frame_digests_find_the_same_frames_in_any_copy(tmp_path):
    system = DEMO_DATA / "gete/train/gete"
    copy = tmp_path / "copy"
    shutil.copytree(system, copy)
    coord = np.load(copy / "set.000/coord.npy")
    np.save(copy / "set.000/coord.npy", coord[::-1].astype(np.float32))  # reordered, single precision
    assert set(frame_digests(str(copy))) == set(frame_digests(str(system)))
    assert len(set(frame_digests(str(system)))) == coord.shape[0]


def test_large_arrays_are_read_a_chunk_at_a_time_and_checked_to_the_last_value(tmp_path, monkeypatch):
    """Files past STREAM_BYTES are streamed (memory: one chunk, whatever the file's size): a NaN in the
    last chunk is found with its frame, a truncated file is named, and mixed-type real_atom_types are
    counted chunk by chunk."""
    from lamflow.ops.data import datasets

    monkeypatch.setattr(datasets, "STREAM_BYTES", 1024)
    monkeypatch.setattr(datasets, "CHUNK", 1000)  # values per chunk: the arrays below span several
    system = tmp_path / "sys"
    sets = system / "set.000"
    sets.mkdir(parents=True)
    frames, natoms = 200, 5
    (system / "type.raw").write_text("0\n" * natoms)
    (system / "type_map.raw").write_text("H\nC\nO\n")
    rng = np.random.default_rng(0)
    np.save(sets / "coord.npy", rng.normal(size=(frames, 3 * natoms)))
    np.save(sets / "box.npy", np.tile(np.eye(3).ravel() * 10, (frames, 1)))
    np.save(sets / "energy.npy", rng.normal(size=frames))
    np.save(
        sets / "real_atom_types.npy", np.where(np.arange(frames * natoms) % 2, 0, 2).reshape(frames, natoms)
    )
    info = datasets.inspect_dataset(tmp_path)
    assert info.systems[0].types == (0, 2) and info.systems[0].nframes == frames
    assert isinstance(datasets._load_npy(sets / "coord.npy"), datasets.NpyStream)
    force = rng.normal(size=(frames, 3 * natoms))
    force[-1, -1] = np.inf  # the very last value
    np.save(sets / "force.npy", force)
    with pytest.raises(datasets.DatasetError, match=r"force.npy: non-finite value inf \(frame 199\)"):
        datasets.inspect_dataset(tmp_path)
    np.save(sets / "force.npy", rng.normal(size=(frames, 3 * natoms)))
    data = (sets / "force.npy").read_bytes()
    (sets / "force.npy").write_bytes(data[:-800])
    with pytest.raises(datasets.DatasetError, match=r"force.npy: not a readable .npy array \(shorter than"):
        datasets.inspect_dataset(tmp_path)


def test_declared_properties_are_checked_like_labels_and_make_energies_optional(tmp_path):
    info = inspect_dataset(DEMO_DATA / "qm9", properties={"band_prop": 3})
    assert [s.natoms for s in info.systems] == [20, 22, 24] and info.nframes == 240
    name, frames, sums, squares = info.systems[0].properties[0]
    labels = np.load(DEMO_DATA / "qm9/data_0/set.000000/band_prop.npy")
    assert (name, frames) == ("band_prop", 80)
    assert sums == pytest.approx(labels.sum(axis=0).tolist()) and len(squares) == 3
    assert info.systems[0].energy_per_atom is None and "energy" not in info.systems[0].arrays
    with pytest.raises(DatasetError, match=r"data_0/set.000000/energy.npy: missing"):
        inspect_dataset(DEMO_DATA / "qm9")  # without the declaration: an energy dataset without energies
    with pytest.raises(DatasetError, match=r"shape \(80, 3\), expected \(80, 2\)"):
        inspect_dataset(DEMO_DATA / "qm9", properties={"band_prop": 2})
    with pytest.raises(DatasetError, match=r"gap.npy: missing \(a declared property\)"):
        inspect_dataset(DEMO_DATA / "qm9", properties={"gap": 1})
    system = make_system(tmp_path / "s")
    np.save(system / "set.000/gap.npy", np.array([[1.0], [np.nan]]))
    with pytest.raises(DatasetError, match=r"gap.npy: non-finite value nan \(frame 1\)"):
        inspect_dataset(system, properties={"gap": 1})
    np.save(system / "set.000/gap.npy", np.array([[1.0], [2.0], [3.0]]))
    with pytest.raises(DatasetError, match="3 frames but coord has 2"):
        inspect_dataset(system, properties={"gap": 1})
