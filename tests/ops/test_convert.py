"""Raw DFT outputs -> deepmd/npy (lamflow.ops.convert and `lamflow data convert`): every file in
../shared/data/dft_outputs, checked number for number against what dpdata reads directly; bad input
refused with the file named and nothing written."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import numpy as np
import pytest

from lamflow.ops.convert import convert
from lamflow.ops.data.datasets import DatasetError
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
    (["qe_pw_scf/01.out"], "qe/pw/scf", ("qe_pw_scf/01.out", "qe/pw/scf")),  # CH4, its input beside it
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
    with pytest.raises(DatasetError, match=r"src: frame 0: non-finite energy value nan"):
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


def _job(sources, fmt, systems, **extra):
    from lamflow.ops.convert import ConversionJob, SourceFile

    return ConversionJob(
        format=fmt,
        sources=[[SourceFile(entry=e, name=n) for e, n in group] for group in sources],
        systems=systems,
        **extra,
    )


def _frames(folder: Path) -> dict[str, int]:
    import os

    from lamflow.ops.data.datasets import inspect_dataset

    return {os.path.relpath(s.path, folder): s.nframes for s in inspect_dataset(folder).systems}


def test_the_convert_step_makes_what_validate_made_from_staged_sources(run_op, tmp_path):
    """Staged entries lose their file names (S3 keys are entry names): the step reads each under its own
    name, a pw.x output beside its input; the output is the validate-time conversion, split and subsets."""
    from lamflow.ops.convert import ConvertOP, ConvertParams
    from lamflow.ops.data.split import SplitRule, write_split, write_subset
    from lamflow.workflows.store.step_cache import content_digest

    staged = tmp_path / "staged"
    staged.mkdir()
    for entry, source in [("h2o-0", "vasp_outcar_h2o/OUTCAR"), ("qe-0", "qe_pw_scf/01.out"),
                          ("qe-0-in", "qe_pw_scf/01.in")]:  # fmt: skip
        shutil.copy(DFT / source, staged / entry)
    reference = tmp_path / "reference"
    convert([DFT / "vasp_outcar_h2o/OUTCAR"], "vasp/outcar", reference / "h2o")
    convert([DFT / "qe_pw_scf/01.out"], "qe/pw/scf", reference / "qe")
    rule = SplitRule(test_frames=3, seed=4)
    split, _ = write_split(
        [str(p) for p in sorted((reference / "h2o").iterdir())], rule, None, tmp_path / "s"
    )
    train = [str(p) for p in sorted((split / "train").iterdir())]
    subset, _ = write_subset(train, 5, 1, rule.seed, tmp_path / "s" / "subsets")

    params = ConvertParams(
        datasets={
            "h2o": _job(
                [[("h2o-0", "OUTCAR")]],
                "vasp/outcar",
                _frames(reference / "h2o"),
                split=rule,
                subsets=[(5, 1)],
            ),  # fmt: skip
            "qe": _job([[("qe-0", "01.out"), ("qe-0-in", "01.in")]], "qe/pw/scf", _frames(reference / "qe")),
        }
    )
    sources = {p.name: p for p in staged.iterdir()}
    out = run_op(ConvertOP, params, sources=sources).datasets
    assert sorted(out) == ["h2o", "h2o@test", "h2o@train", "h2o@train-n5-r1", "qe"]
    assert content_digest(out["h2o"]) == content_digest(reference / "h2o")
    assert content_digest(out["qe"]) == content_digest(reference / "qe")
    for part in ("train", "test"):
        assert content_digest(out[f"h2o@{part}"]) == content_digest(split / part)
    assert content_digest(out["h2o@train-n5-r1"]) == content_digest(subset)


def test_the_convert_step_fails_when_its_conversion_differs_from_validates(run_op, tmp_path):
    from dflow.python import FatalError

    from lamflow.ops.convert import ConvertOP, ConvertParams

    (tmp_path / "staged").mkdir()
    shutil.copy(DFT / "vasp_outcar_h2o/OUTCAR", tmp_path / "staged" / "e")
    params = ConvertParams(datasets={"h2o": _job([[("e", "OUTCAR")]], "vasp/outcar", {"H4O2": 11})})
    with pytest.raises(FatalError, match=r"datasets\.h2o: dpdata here converted 10 frames in 1 systems .*"
                       r"validate checked 11 frames"):  # fmt: skip
        run_op(ConvertOP, params, sources={"e": tmp_path / "staged" / "e"})


def _broken_outcar(tmp_path: Path, kind: str) -> Path:
    text = (DFT / "vasp_outcar_h2o/OUTCAR").read_text()
    if kind == "nan force":
        text = text.replace("-0.141986", "nan", 1)
    elif kind == "truncated":
        text = text[: len(text) // 50]
    elif kind == "empty":
        text = ""
    path = tmp_path / kind.replace(" ", "-") / "OUTCAR"
    path.parent.mkdir()
    path.write_text(text)
    return path


@pytest.mark.parametrize(
    ("kind", "fmt", "words"),
    [
        ("nan force", "vasp/outcar", r"nan-force/OUTCAR: frame 0: non-finite force value nan"),
        ("truncated", "vasp/outcar", r"OUTCAR: (not readable as vasp/outcar|no labelled frames)"),
        ("empty", "vasp/outcar", r"OUTCAR: empty file \(0 bytes\), not a vasp/outcar output"),
        ("intact", "qe/pw/scf", r"OUTCAR: not readable as qe/pw/scf"),  # the wrong format
    ],
)
def test_data_check_of_broken_raw_outputs_is_one_line_naming_the_source(kind, fmt, words, tmp_path):
    source = DFT / "vasp_outcar_h2o/OUTCAR" if kind == "intact" else _broken_outcar(tmp_path, kind)
    out = run_cli("data", "check", str(source), "--format", fmt)
    assert out.returncode == 2, out.stdout + out.stderr
    (line,) = out.stderr.strip().splitlines()
    assert re.search(words, line), line
    assert "lamflow-check-" not in line, "the temporary folder is not what a user looks for"


def test_data_check_of_raw_outputs_reports_the_systems_dpdata_makes(tmp_path):
    out = run_cli("data", "check", str(DFT / "qe_pw_scf/*.out"), "--format", "qe/pw/scf", "--output", "json")
    assert out.returncode == 0, out.stderr
    report = json.loads(out.stdout)
    assert report["format"] == "qe/pw/scf" and report["path"].endswith("*.out")
    assert sorted(s["path"] for s in report["systems"]) == [
        "H0C0Al4",
        "H4C1Al0",
    ]  # dpdata names them by formula, union type map
    assert all(s["nframes"] == 1 and "force" in s["arrays"] for s in report["systems"])


def test_a_changed_pw_input_is_converted_again(tmp_path):
    """dpdata reads a QE output's atoms and cell from the .in beside it: the conversion cache keys on both."""
    from lamflow.ops.convert import convert_cached

    copy = tmp_path / "qe"
    shutil.copytree(DFT / "qe_pw_scf", copy)
    first = convert_cached([copy / "01.out"], "qe/pw/scf", tmp_path / "cache")
    assert convert_cached([copy / "01.out"], "qe/pw/scf", tmp_path / "cache") == first
    text = (copy / "01.in").read_text()
    (copy / "01.in").write_text(text + "\n")  # the input changed, the output did not
    assert convert_cached([copy / "01.out"], "qe/pw/scf", tmp_path / "cache") != first


def test_validate_names_the_raw_source_and_frame_of_a_non_finite_label(tmp_path, write_spec):
    from lamflow.workflows.api import validate
    from lamflow.workflows.errors import SpecError
    from tests.conftest import minimal_spec

    spec = minimal_spec()
    spec["datasets"]["h2o"] = {"path": str(_broken_outcar(tmp_path, "nan force")), "format": "vasp/outcar"}
    with pytest.raises(SpecError) as info:
        validate(write_spec(spec))
    message = str(info.value)
    assert (
        "datasets.h2o.path: " in message
        and "nan-force/OUTCAR: frame 0: non-finite force value nan" in message
    )
    assert "converted" not in message and ".cache" not in message


def test_a_nan_in_an_extxyz_file_names_the_file_and_frame(tmp_path):
    text = (DFT / "extxyz_BC/xyz_unittest.xyz").read_text().splitlines()
    text[2] = text[2].replace("-7.25565900000", "nan", 1)  # the first frame's first atom's force
    source = tmp_path / "broken.xyz"
    source.write_text("\n".join(text) + "\n")
    with pytest.raises(
        DatasetError, match=r"broken\.xyz: frame \d+ of its \w+ frames: non-finite force value nan"
    ):
        convert([str(source)], "extxyz", tmp_path / "out")
