"""Trees in a store (manifest + content-addressed blobs), on a local directory and on a real S3 endpoint
(moto_server): round trips, incremental pushes, corruption, interrupted pushes, faults."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest

from lamflow.workflows.errors import UsageError
from lamflow.workflows.store import trees
from lamflow.workflows.store.backends import LocalBackend, StoreUnreachable, open_location
from tests.conftest import DEMO_DATA, run_cli

WATER = DEMO_DATA / "water" / "train"


def _copy(tmp_path: Path) -> Path:
    src = tmp_path / "water"
    shutil.copytree(WATER, src)
    return src


def _same(a: Path, b: Path) -> bool:
    return trees.tree_digest(trees.scan(a)) == trees.tree_digest(trees.scan(b))


@pytest.fixture(params=["local", "s3"])
def location(request, tmp_path):
    if request.param == "local":
        return str(tmp_path / "remote")
    s3 = request.getfixturevalue("s3")
    return f"s3://{s3.test_bucket}/datasets"


def test_round_trip_verifies_every_file(location, tmp_path):
    src = _copy(tmp_path)
    (src / "big.bin").write_bytes(os.urandom(trees.SMALL_FILE + 1))  # a blob of its own
    backend = open_location(location)
    pushed = trees.push(src, backend, "water")
    manifest = trees.read_manifest(backend, "water")
    assert {f["path"] for f in manifest["files"]} == {
        p.relative_to(src).as_posix() for p in src.rglob("*") if p.is_file()
    }
    kinds = {b["kind"] for b in manifest["blobs"].values()}
    assert kinds == {"file", "tar"}
    pulled = trees.pull(backend, tmp_path / "copy", "water")
    assert _same(src, tmp_path / "copy") and pulled.digest == pushed.digest == manifest["digest"]
    assert pulled.files == pushed.files and pulled.bytes_total == pushed.bytes_total


@pytest.fixture
def small_packs(monkeypatch):
    """Packs of about 16 KiB, so that the demo's 113 KB of water data make several."""
    monkeypatch.setattr(trees, "PACK_TARGET", 16 * 2**10)


def test_push_sends_only_missing_blobs(location, tmp_path, small_packs):
    src = _copy(tmp_path)
    backend = open_location(location)
    first = trees.push(src, backend, "water")
    again = trees.push(src, backend, "water")
    assert first.bytes_moved > 0 and again.bytes_moved == 0 and again.blobs_moved == 0
    one_set = sorted(src.glob("*/set.*"))[0]
    (one_set / "energy.npy").write_bytes((one_set / "energy.npy").read_bytes()[:-8] + b"\0" * 8)
    changed = trees.push(src, backend, "water")
    assert changed.blobs_moved == 1  # only the pack that holds the changed file
    assert 0 < changed.bytes_moved < first.bytes_moved
    assert changed.digest != first.digest


def test_a_push_never_lists_the_store(tmp_path, monkeypatch):
    """Presence is asked per blob: a push costs the same in a store that already holds many runs."""
    backend = LocalBackend(tmp_path / "remote")

    def refuse(self, prefix):
        raise AssertionError(f"listed {prefix!r}")

    monkeypatch.setattr(LocalBackend, "keys", refuse)
    first = trees.push(_copy(tmp_path), backend, "water")
    assert (
        first.blobs_moved == first.blobs_total
        and trees.push(tmp_path / "water", backend, "b").bytes_moved == 0
    )


def test_corrupted_blob_is_named_and_destination_untouched(location, tmp_path):
    src = _copy(tmp_path)
    backend = open_location(location)
    trees.push(src, backend, "water")
    manifest = trees.read_manifest(backend, "water")
    blob = next(iter(manifest["blobs"]))
    good = backend.get_bytes(f"blobs/{blob}")
    assert good is not None
    backend.delete(f"blobs/{blob}")
    backend.put_bytes(f"blobs/{blob}", good[:-1] + bytes([good[-1] ^ 1]))
    with pytest.raises(trees.CorruptObject, match="does not match its SHA-256"):
        trees.pull(backend, tmp_path / "copy", "water")
    assert not (tmp_path / "copy").exists()
    assert not list(tmp_path.glob(".copy.pull-*"))


def test_a_pack_lacking_a_file_its_manifest_lists_is_named(tmp_path):
    src = _copy(tmp_path)
    backend = LocalBackend(tmp_path / "remote")
    trees.push(src, backend, "water")
    manifest = trees.read_manifest(backend, "water")
    entry = dict(manifest["files"][0], path="data_0/set.000/extra.npy")  # in the pack's listing only
    manifest["files"].append(entry)
    backend.put_bytes(trees.manifest_key("water"), json.dumps(manifest).encode())
    with pytest.raises(trees.CorruptObject, match=r"data_0/set.000/extra.npy is missing from blob"):
        trees.pull(backend, tmp_path / "copy", "water")
    assert not (tmp_path / "copy").exists()


def test_interrupted_push_publishes_nothing_and_a_retry_completes(tmp_path, monkeypatch, small_packs):
    src = _copy(tmp_path)
    backend = LocalBackend(tmp_path / "remote")
    real_put = LocalBackend.put_bytes
    calls = {"n": 0}

    def flaky(self, key, data, sha256=None):
        calls["n"] += 1
        if calls["n"] == 3:
            raise ConnectionError("connection reset")
        return real_put(self, key, data, sha256)

    monkeypatch.setattr(LocalBackend, "put_bytes", flaky)
    with pytest.raises(ConnectionError):
        trees.push(src, backend, "water")
    assert not backend.exists(trees.manifest_key("water"))
    monkeypatch.setattr(LocalBackend, "put_bytes", real_put)
    retry = trees.push(src, backend, "water")
    assert 0 < retry.blobs_moved < retry.blobs_total  # what the first attempt sent is not sent again
    for blob in trees.read_manifest(backend, "water")["blobs"]:
        assert backend.exists(f"blobs/{blob}")


def test_an_unreadable_file_fails_the_push_with_its_own_error(tmp_path, small_packs, monkeypatch):
    src = _copy(tmp_path)
    backend = LocalBackend(tmp_path / "remote")
    real_read = Path.read_bytes

    def read(self):
        if self.name == "force.npy" and "data_2" in str(self):
            raise PermissionError(13, "Permission denied", str(self))
        return real_read(self)

    monkeypatch.setattr(Path, "read_bytes", read)
    with pytest.raises(UsageError, match=r"data_2/set.000/force.npy: cannot read it \(Permission denied\)"):
        trees.push(src, backend, "water")
    assert not backend.exists(trees.manifest_key("water"))


def _tree(root: Path, files: int = 240, size: int = 1000) -> Path:
    """Many small files in nested folders (sorted order mixes folders and files)."""
    for i in range(files):
        path = root / f"sys{i // 40}" / f"set.{i % 40 // 10:03d}" / f"f{i % 10}.npy"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(os.urandom(size))
    return root


def test_pack_boundaries_depend_only_on_each_files_own_path_and_size(tmp_path, small_packs):
    src = _tree(tmp_path / "src")
    backend = LocalBackend(tmp_path / "remote")
    first = trees.push(src, backend, "t")
    assert 6 <= first.blobs_total <= 40  # 240 KB in packs of about 16 KiB
    assert trees.read_manifest(backend, "t")["digest"] == trees.tree_digest(trees.scan(src))
    # a file that grows, a new file, a removed file: each re-sends its own pack and at most one neighbour,
    # never every pack after it (as size-based cuts would)
    grown = src / "sys1" / "set.002" / "f3.npy"
    grown.write_bytes(grown.read_bytes() + os.urandom(300))
    assert 1 <= trees.push(src, backend, "t").blobs_moved <= 2
    (src / "sys2" / "set.001" / "new.npy").write_bytes(os.urandom(700))
    assert 1 <= trees.push(src, backend, "t").blobs_moved <= 2
    (src / "sys4" / "set.000" / "f5.npy").unlink()
    assert 1 <= trees.push(src, backend, "t").blobs_moved <= 2
    trees.pull(backend, tmp_path / "copy", "t")
    assert _same(src, tmp_path / "copy")


def test_push_holds_a_bounded_number_of_packs(tmp_path, small_packs, monkeypatch):
    """Reading runs ahead of sending by at most IN_FLIGHT packs, whatever the tree's size."""
    import threading
    import time

    monkeypatch.setattr(trees, "IN_FLIGHT", 3)
    src = _tree(tmp_path / "src", files=400)
    backend = LocalBackend(tmp_path / "remote")
    lock = threading.Lock()
    held = {"now": 0, "most": 0}
    real_close, real_put = trees._Pack.close, LocalBackend.put_bytes

    def close(self):
        with lock:
            held["now"] += 1
            held["most"] = max(held["most"], held["now"])
        return real_close(self)

    def slow_put(self, key, data, sha256=None):
        time.sleep(0.01)
        real_put(self, key, data, sha256)
        if key.startswith("blobs/"):
            with lock:
                held["now"] -= 1

    monkeypatch.setattr(trees._Pack, "close", close)
    monkeypatch.setattr(LocalBackend, "put_bytes", slow_put)
    pushed = trees.push(src, backend, "t")
    assert pushed.blobs_total > 10 and held["most"] <= 3 + 1  # + the one being handed over


def test_s3_uploads_carry_the_blobs_sha256_and_no_second_payload_hash(s3, tmp_path):
    """The pack's SHA-256, computed for its name, travels as x-amz-checksum-sha256 (which S3 checks);
    botocore does not hash the body again for the signature."""
    import base64

    backend = open_location(f"s3://{s3.test_bucket}/sums")
    sent: list[dict[str, str]] = []

    def record(request, **_):
        headers = {k: v.decode() if isinstance(v, bytes) else v for k, v in request.headers.items()}
        sent.append({k.lower(): v for k, v in headers.items()})

    backend.client.meta.events.register("before-send.s3.PutObject", record)
    trees.push(_copy(tmp_path), backend, "water")
    (blob,) = trees.read_manifest(backend, "water")["blobs"]
    assert base64.b64encode(bytes.fromhex(blob)).decode() in {h.get("x-amz-checksum-sha256") for h in sent}
    assert sent and all(h["x-amz-content-sha256"] == "UNSIGNED-PAYLOAD" for h in sent)


def test_pull_never_overwrites(tmp_path):
    backend = LocalBackend(tmp_path / "remote")
    trees.push(_copy(tmp_path), backend, "water")
    (tmp_path / "dest").mkdir()
    (tmp_path / "dest" / "mine.txt").write_text("keep me")
    with pytest.raises(UsageError, match="not empty"):
        trees.pull(backend, tmp_path / "dest", "water")
    assert (tmp_path / "dest" / "mine.txt").read_text() == "keep me"


def test_unknown_bucket_and_unreachable_endpoint(s3, tmp_path, monkeypatch):
    with pytest.raises(UsageError, match="no such bucket"):
        trees.push(_copy(tmp_path), open_location("s3://no-such-bucket-here/x"), "")
    monkeypatch.setenv("AWS_ENDPOINT_URL", "http://127.0.0.1:9")  # nothing listens on the discard port
    with pytest.raises(StoreUnreachable, match="cannot reach"):
        open_location(f"s3://{s3.test_bucket}/x", max_attempts=2).check()


def test_cli_push_pull_ls_json(s3, tmp_path):
    uri = f"s3://{s3.test_bucket}/datasets/water"
    pushed = run_cli("data", "push", str(WATER), uri, "--output", "json")
    assert pushed.returncode == 0, pushed.stderr
    first = json.loads(pushed.stdout)
    assert set(first) >= {"uri", "files", "bytes_total", "bytes_sent"} and first["bytes_sent"] > 0
    again = json.loads(run_cli("data", "push", str(WATER), uri, "--output", "json").stdout)
    assert again["bytes_sent"] == 0 and again["bytes_total"] == first["bytes_total"]
    pulled = run_cli("data", "pull", uri, str(tmp_path / "copy"), "--output", "json")
    assert pulled.returncode == 0, pulled.stderr
    got = json.loads(pulled.stdout)
    assert set(got) >= {"uri", "files", "bytes_total", "bytes_received"} and got["files"] == first["files"]
    assert _same(WATER, tmp_path / "copy")
    listed = json.loads(run_cli("data", "ls", f"s3://{s3.test_bucket}", "--output", "json").stdout)
    assert [d["uri"] for d in listed] == [uri]
    text = run_cli("data", "push", str(WATER), uri)
    assert "0 B sent" in text.stdout


def test_cli_errors_are_one_line(s3, tmp_path):
    missing = run_cli("data", "push", str(WATER), "s3://no-such-bucket-here/water")
    assert missing.returncode == 2 and missing.stderr.count("\n") == 1 and "no such bucket" in missing.stderr
    nothing = run_cli("data", "pull", f"s3://{s3.test_bucket}/nothing", str(tmp_path / "x"))
    assert nothing.returncode == 2 and "push one first" in nothing.stderr
    down = run_cli(
        "data",
        "ls",
        f"s3://{s3.test_bucket}",
        env={"AWS_ENDPOINT_URL": "http://127.0.0.1:9", "AWS_MAX_ATTEMPTS": "2"},
    )
    assert down.returncode == 1 and down.stderr.count("\n") == 1 and "cannot reach" in down.stderr


def test_server_restart_mid_push_publishes_nothing(s3, tmp_path):
    """moto keeps objects in memory: a restart loses them, as a failed service would. The push fails with
    one line; no manifest appears; a push after the restart completes."""
    from lamflow.workflows.errors import LamflowError

    backend = open_location(f"s3://{s3.test_bucket}/d")
    restarted = []

    def restart_once(_: int) -> None:
        if not restarted:
            restarted.append(True)
            s3.stop()
            s3.start()

    with pytest.raises(LamflowError) as failure:
        trees.push(_copy(tmp_path), backend, "water", progress=restart_once)
    assert "\n" not in str(failure.value)
    s3.bucket(s3.test_bucket)
    assert not backend.exists(trees.manifest_key("water"))
    done = trees.push(tmp_path / "water", backend, "water")
    assert done.blobs_moved == done.blobs_total and backend.exists(trees.manifest_key("water"))
