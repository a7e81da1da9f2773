"""What validate worked out, remembered: on disk under the cache directory, and in the process."""

from __future__ import annotations

from lamflow.workflows import check_cache


def test_a_value_is_remembered_on_disk_and_in_the_process(tmp_path, monkeypatch):
    monkeypatch.setenv("LAMFLOW_CACHE_DIR", str(tmp_path / "cache"))
    key = {"stamp": [["coord.npy", 10, 1]], "rcut": 6.0}
    assert check_cache.recall("neighbours", key) is None
    check_cache.remember("neighbours", key, {"most": [106, 40]})
    assert list((tmp_path / "cache/checks/neighbours").glob("*.json")), "written to disk"

    remembered = check_cache.recall("neighbours", key)
    assert remembered == {"most": [106, 40]}
    remembered["most"].append(1)  # a caller's change never reaches what is remembered
    assert check_cache.recall("neighbours", key) == {"most": [106, 40]}

    monkeypatch.setattr(check_cache, "_memory", type(check_cache._memory)())  # a new process: disk only
    assert check_cache.recall("neighbours", key) == {"most": [106, 40]}
    assert check_cache.recall("neighbours", {**key, "rcut": 5.0}) is None
    assert check_cache.recall("datasets", key) is None  # kinds apart


def test_the_process_keeps_only_the_latest_values(tmp_path, monkeypatch):
    monkeypatch.setenv("LAMFLOW_CACHE_DIR", str(tmp_path / "unwritable" / "x"))
    (tmp_path / "unwritable").write_text("a file, not a folder: nothing can be written under it")
    monkeypatch.setattr(check_cache, "_memory", type(check_cache._memory)())
    monkeypatch.setattr(check_cache, "IN_MEMORY", 2)
    for n in range(3):
        check_cache.remember("neighbours", {"n": n}, n)  # the disk fails quietly; memory keeps it
    assert [check_cache.recall("neighbours", {"n": n}) for n in range(3)] == [None, 1, 2]
