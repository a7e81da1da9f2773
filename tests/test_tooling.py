"""Lint, format and type checks are part of the test suite (ruff; mypy with the pydantic plugin)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from tests.conftest import REPO

BIN = Path(sys.executable).parent


def run(*argv: str, cwd: Path = REPO) -> subprocess.CompletedProcess[str]:
    return subprocess.run(list(argv), cwd=cwd, capture_output=True, text=True, timeout=600)


def test_ruff_lint_and_format():
    lint = run(str(BIN / "ruff"), "check", ".")
    assert lint.returncode == 0, lint.stdout
    fmt = run(str(BIN / "ruff"), "format", "--check", ".")
    assert fmt.returncode == 0, fmt.stdout


def test_mypy(tmp_path):
    # The package maps lamflow.workflows -> workflows/ and lamflow.ops -> ops/; give mypy that layout.
    (tmp_path / "lamflow").mkdir()
    (tmp_path / "lamflow" / "workflows").symlink_to(REPO / "workflows")
    (tmp_path / "lamflow" / "ops").symlink_to(REPO / "ops")
    result = run(
        str(BIN / "mypy"),
        "--config-file",
        str(REPO / "pyproject.toml"),
        "--cache-dir",
        str(tmp_path / ".mypy_cache"),
        "--namespace-packages",
        "--explicit-package-bases",
        "lamflow",
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stdout
