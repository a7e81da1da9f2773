"""validate checks a dataset's arrays once: an unchanged dataset (same files, sizes, modification times)
is not read again; any change to a file checks it again."""

from __future__ import annotations

import os
import shutil

import pytest

from lamflow.ops.data import datasets
from lamflow.workflows.resolve import inspected
from tests.conftest import DEMO_DATA


@pytest.fixture
def counted(monkeypatch):
    calls = []
    real = datasets.inspect_dataset

    def inspect(path, fmt=datasets.NPY, *args, **kwargs):
        calls.append(str(path))
        return real(path, fmt, *args, **kwargs)

    monkeypatch.setattr(inspected, "inspect_dataset", inspect)
    return calls


def test_an_unchanged_dataset_is_read_once_and_a_changed_one_again(tmp_path, counted):
    data = tmp_path / "gete"
    shutil.copytree(DEMO_DATA / "gete/train", data)
    first = inspected.inspect_remembered(data)
    again = inspected.inspect_remembered(data)
    assert again == first and counted == [str(data)], "the second check is remembered, equal to the first"
    energy = next(data.rglob("energy.npy"))
    os.utime(energy, ns=(energy.stat().st_atime_ns, energy.stat().st_mtime_ns + 1_000_000_000))
    assert inspected.inspect_remembered(data) == first and len(counted) == 2, "a touched file: read again"
    (next(data.rglob("set.000")) / "force.npy").write_bytes(b"broken")
    with pytest.raises(datasets.DatasetError, match="force.npy: not a readable .npy array"):
        inspected.inspect_remembered(data)  # a broken file is found, never hidden by what was remembered


def test_too_many_files_are_checked_every_time(tmp_path, counted, monkeypatch):
    monkeypatch.setattr(inspected, "MAX_FILES", 2)
    data = tmp_path / "gete"
    shutil.copytree(DEMO_DATA / "gete/train", data)
    inspected.inspect_remembered(data)
    inspected.inspect_remembered(data)
    assert len(counted) == 2
