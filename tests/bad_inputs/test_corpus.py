"""The bad-input corpus: every malformed spec and dataset is refused at validate with one line naming
the file and YAML path (exit 2), and no case starts a step."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml

from lamflow.workflows import api
from lamflow.workflows.engines.local import LocalEngine
from lamflow.workflows.errors import LamflowError
from lamflow.workflows.settings import Settings
from tests.bad_inputs.datasets import CASES, make_broken, make_hdf5_without_coord
from tests.conftest import minimal_spec, run_cli

SPECS = sorted((Path(__file__).parent / "specs").glob("*.yaml"))
HEADER = re.compile(r"^# expect: (\d) (\S+) \| (.+)$")


def expectation(spec: Path) -> tuple[int, str, str]:
    match = HEADER.match(spec.read_text().splitlines()[0])
    assert match, f"{spec.name}: first line must be '# expect: <code> <path> | <fragment>'"
    return int(match.group(1)), match.group(2), match.group(3)


@pytest.fixture
def no_step_may_start(monkeypatch, tmp_path):
    """Any engine start fails the test; runs would go under tmp_path."""

    def refuse(*args, **kwargs):
        raise AssertionError("a step was started for bad input")

    monkeypatch.setattr(LocalEngine, "submit", refuse)
    return Settings(run_root=tmp_path / "runs")


def refused(call) -> LamflowError:
    with pytest.raises(LamflowError) as info:
        call()
    return info.value


def test_the_corpus_is_large_enough():
    assert len(SPECS) >= 40 and len(CASES) >= 15


@pytest.mark.parametrize("spec", SPECS, ids=lambda p: p.stem)
def test_bad_spec_is_refused_before_any_step(spec, no_step_may_start, tmp_path):
    code, path, fragment = expectation(spec)
    error = refused(lambda: api.submit(spec, no_step_may_start, tmp_path / "run"))
    message = str(error)
    assert error.exit_code == code
    assert "\n" not in message
    prefix = f"{spec}: " if path == "-" else f"{spec}: {path}: "
    assert message.startswith(prefix), message
    assert fragment in message, message
    assert "pattern" not in message and "Input should" not in message, "pydantic's words, not the user's"
    assert not (tmp_path / "run").exists() and not (tmp_path / "runs").exists()


@pytest.mark.parametrize(("name", "breakage", "fragment"), CASES, ids=[c[0] for c in CASES])
def test_bad_dataset_is_refused_before_any_step(
    name, breakage, fragment, tmp_path, write_spec, no_step_may_start
):
    dataset = make_broken(tmp_path, breakage)
    spec = minimal_spec()
    spec["datasets"]["gete"] = {"path": str(dataset)}
    spec_file = write_spec(spec)
    error = refused(lambda: api.submit(spec_file, no_step_may_start, tmp_path / "run"))
    message = str(error)
    assert error.exit_code == 2 and "\n" not in message
    assert message.startswith(f"{spec_file}: datasets.gete.path: {dataset}"), message
    assert fragment in message, message
    check = refused(lambda: api.data_check(dataset))
    assert check.exit_code == 2 and fragment in str(check)


def test_hdf5_without_coord(tmp_path):
    error = refused(lambda: api.data_check(make_hdf5_without_coord(tmp_path), "deepmd/hdf5"))
    assert "nocoord.hdf5#/" in str(error) and "coord.npy: missing" in str(error)


@pytest.mark.parametrize("stem", ["steps-quoted", "descriptor-unknown-type", "nested-too-deep"])
def test_cli_exit_code_and_one_line(stem):
    spec = next(s for s in SPECS if s.stem == stem)
    code, path, fragment = expectation(spec)
    result = run_cli("validate", str(spec))
    assert result.returncode == code
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("lamflow: error: ") and fragment in lines[0]
    assert "Traceback" not in result.stderr


def test_data_check_cli_reports_and_exits_2(tmp_path):
    from tests.conftest import DEMO_DATA

    good = run_cli("data", "check", str(DEMO_DATA / "water/train"), "--output", "json")
    assert good.returncode == 0
    report = yaml.safe_load(good.stdout)
    assert len(report["systems"]) == 2 and all(s["nframes"] > 0 for s in report["systems"])
    assert report["seconds"] >= 0
    assert report["systems"][0]["arrays"] == ["box", "coord", "energy", "force"]
    text = run_cli("data", "check", str(DEMO_DATA / "gete/train"))
    assert text.returncode == 0 and "Ge Te" in text.stdout and "checked in" in text.stdout
    bad = run_cli("data", "check", str(make_broken(tmp_path, CASES[0][1])))
    assert bad.returncode == 2 and "non-finite value nan" in bad.stderr
