"""Raw DFT outputs -> deepmd/npy (lamflow.ops.convert and `lamflow data convert`): every file in
../shared/data/dft_outputs, checked number for number against what dpdata reads directly; bad input
refused with the file named and nothing written."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from lamflow.ops.convert import convert
from lamflow.ops.data import DatasetError
from tests.conftest import REPO, run_cli

DFT = REPO.parent / "shared" / "data" / "dft_outputs"
pytestmark = pytest.mark.skipif(not DFT.exists(), reason="../shared not present")

# (sources relative to DFT, format, single-system reference as dpdata reads it)
CASES = [
    (["vasp_outcar_h2o/OUTCAR"], "vasp/outcar", ("vasp_outcar_h2o/OUTCAR", "vasp/outcar")),
    (["vasp_xml_TiO/vasprun.xml"], "vasp/xml", ("vasp_xml_TiO/vasprun.xml", "vasp/xml")),
    (["vasp_xml_TiO/OUTCAR"], "vasp/outcar", ("vasp_xml_TiO/vasprun.xml", "vasp/xml")),  # same calculation
    (["cp2k_output_FeO/cp2k_output"], "cp2k/output", ("cp2k_output_FeO/deepmd", "deepmd/npy")),
    (["qe_pw_scf/Al.out"], "qe/pw/scf", ("qe_pw_scf/Al.out", "qe/pw/scf")),
]


def _labels(system) -> dict[str, np.ndarray]:
    out = {k: np.asarray(system[k]) for k in ("coords", "energies", "forces") if k in system.data}
    if "virials" in system.data:
        out["virials"] = np.asarray(system["virials"])
    return out


@pytest.mark.parametrize(("sources", "fmt", "reference"), CASES, ids=lambda c: str(c))
def test_each_format_converts_to_what_dpdata_reads(sources, fmt, reference, tmp_path):
    import dpdata

    result = convert([str(DFT / s) for s in sources], fmt, tmp_path / "out")
    systems = [p for p in (tmp_path / "out").iterdir() if p.is_dir()]
    assert len(systems) == 1 and result.info.nframes >= 1
    written = dpdata.LabeledSystem(str(systems[0]), fmt="deepmd/npy")
    expected = dpdata.LabeledSystem(str(DFT / reference[0]), fmt=reference[1])
    assert written.get_nframes() == expected.get_nframes()
    assert sorted(written["atom_names"]) == sorted(expected["atom_names"])
    ref = _labels(expected)
    for key, value in _labels(written).items():
        assert np.allclose(value, ref[key], atol=1e-5), key  # same atoms order within a composition
    assert set(ref) == set(_labels(written))  # energies/forces/virials kept where present


def test_extxyz_with_several_compositions_and_a_glob(tmp_path):
    import dpdata

    result = convert([str(DFT / "extxyz_BC" / "*.xyz")], "extxyz", tmp_path / "out")
    assert len(result.info.systems) == 2 and result.type_map == ("B", "C")
    for name in ("B1C9", "B5C7"):
        reference = dpdata.LabeledSystem(str(DFT / "extxyz_BC" / name), fmt="deepmd/raw")
        written = dpdata.LabeledSystem(str(tmp_path / "out" / name), fmt="deepmd/npy")
        assert np.allclose(written["energies"], reference["energies"])
        assert np.allclose(written["forces"], reference["forces"])


def test_many_files_are_merged_under_one_type_map(tmp_path):
    result = convert([str(DFT / "qe_pw_scf" / "*.out")], "qe/pw/scf", tmp_path / "out")
    assert len(result.sources) == 2 and set(result.type_map) >= {"Al", "C", "H"}
    for system in result.info.systems:
        assert system.type_map == result.type_map  # every system names types the same way


@pytest.mark.parametrize(
    ("sources", "fmt", "words"),
    [
        (["vasp_outcar_h2o/OUTCAR"], "qe/pw/scf", "OUTCAR: not readable as qe/pw/scf"),
        (["vasp_outcar_h2o/missing"], "vasp/outcar", "missing: no such file"),
        (["vasp_outcar_h2o/*.nothing"], "vasp/outcar", "the pattern matches nothing"),
        (["vasp_outcar_h2o/OUTCAR"], "vasp/poscar-ish", "unknown format 'vasp/poscar-ish'"),
    ],
)
def test_bad_sources_are_refused_and_nothing_is_written(sources, fmt, words, tmp_path):
    with pytest.raises(DatasetError, match=words.replace("*", r"\*")):
        convert([str(DFT / s) for s in sources], fmt, tmp_path / "out")
    assert list(tmp_path.iterdir()) == []  # no output, no scratch folder


def test_non_finite_labels_are_refused_naming_the_file(tmp_path):
    source = tmp_path / "src"
    shutil.copytree(DFT / "cp2k_output_FeO" / "deepmd", source)
    energy = next(source.glob("set.*/energy.npy"))
    values = np.load(energy)
    values[0] = np.nan
    np.save(energy, values)
    with pytest.raises(DatasetError, match=r"energy.npy.*(NaN|non-finite|not finite)"):
        convert([str(source)], "deepmd/npy", tmp_path / "out")
    assert not (tmp_path / "out").exists()
    assert [p.name for p in tmp_path.iterdir()] == ["src"]


def test_an_existing_output_is_never_overwritten(tmp_path):
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "keep.txt").write_text("mine")
    with pytest.raises(DatasetError, match="already exists"):
        convert([str(DFT / "vasp_outcar_h2o/OUTCAR")], "vasp/outcar", tmp_path / "out")
    assert (tmp_path / "out" / "keep.txt").read_text() == "mine"


def test_cli_converts_and_reports_and_fails_with_one_line(tmp_path):
    ok = run_cli(
        "data",
        "convert",
        str(DFT / "vasp_outcar_h2o/OUTCAR"),
        "--fmt",
        "vasp/outcar",
        "-o",
        str(tmp_path / "h2o"),
        "--output",
        "json",
    )
    assert ok.returncode == 0, ok.stderr
    report = json.loads(ok.stdout)
    assert report["type_map"] == ["O", "H"] and report["info"]["systems"][0]["nframes"] == 10
    bad = run_cli(
        "data",
        "convert",
        str(DFT / "vasp_outcar_h2o/OUTCAR"),
        "--fmt",
        "cp2k/output",
        "-o",
        str(tmp_path / "bad"),
    )
    assert bad.returncode == 2
    assert bad.stderr.strip().count("\n") == 0 and "not readable as cp2k/output" in bad.stderr
    assert "Traceback" not in bad.stderr and not (tmp_path / "bad").exists()
    assert Path(tmp_path / "h2o").is_dir()
