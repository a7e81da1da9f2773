"""A wheel built from the tree contains every module under workflows/ and ops/ (a step image built
from it must not miss a folder), with the lamflow.* import names and the package data."""

from __future__ import annotations

import subprocess
import sys
import zipfile

from tests.conftest import REPO


def expected_files() -> set[str]:
    files = set()
    for folder, prefix in (("workflows", "lamflow/workflows"), ("ops", "lamflow/ops")):
        for path in (REPO / folder).rglob("*"):
            if path.suffix in (".py", ".json", ".typed") and "__pycache__" not in path.parts:
                files.add(f"{prefix}/{path.relative_to(REPO / folder).as_posix()}")
    return files


def test_wheel_contains_every_module(tmp_path):
    pip_wheel = [sys.executable, "-m", "pip", "wheel", "--no-build-isolation", "--no-deps", "-q"]
    build = subprocess.run(
        [*pip_wheel, "-w", str(tmp_path), str(REPO)], capture_output=True, text=True, timeout=300
    )
    assert build.returncode == 0, build.stderr
    (wheel,) = tmp_path.glob("lamflow-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    missing = expected_files() - names
    assert not missing, f"not in the wheel: {sorted(missing)}"
    assert "lamflow/workflows/stages/test.py" in names and "lamflow/workflows/presets/dpa2-tiny.json" in names
    assert not any(n.startswith(("workflows/", "ops/", "tests/")) for n in names), (
        "no top-level ops/workflows"
    )
    assert not any(n.startswith("lamflow/__init__") for n in names), "lamflow stays a namespace package"
