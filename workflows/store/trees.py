"""Folders in a store: a manifest (relative path, size, SHA-256 per file) plus content-addressed blobs.

Small files (a deepmd/npy set holds many) are packed into uncompressed tar blobs of about
``PACK_TARGET`` bytes; large files are blobs of their own, moved with multipart, concurrent transfers.
Where a pack ends depends only on each file's own path and size (see :func:`ends_pack`), so changing a
file changes its own pack, not every pack after it, and a re-push sends only that one.

A push reads every file once (hashing it and packing it in the same pass) and sends each pack while the
next is being read, holding at most a few packs in memory. It sends only the blobs the store lacks and
writes the manifest last, so an interrupted push never leaves a manifest pointing at missing blobs. A pull
fetches packs concurrently, checks each pack's and each file's SHA-256 in memory as it unpacks, in a
temporary folder that is renamed into place, so a corrupted object leaves the destination untouched.

The tree's *digest* hashes the file list (paths, sizes, SHA-256s) only, not how it was packed: the same
files have the same digest wherever they come from.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import shutil
import stat
import tarfile
import tempfile
import threading
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

from lamflow.workflows.errors import LamflowError, UsageError
from lamflow.workflows.store.backends import Backend

FORMAT = "lamflow-tree/1"
MANIFEST = "manifest.json"
BLOBS = "blobs"
SMALL_FILE = 4 * 2**20  # files below this are packed
PACK_TARGET = 16 * 2**20  # the mean size of a pack of small files
PACK_LIMIT = 64 * 2**20  # a pack is always closed past this size
MAX_FILES = 1_000_000
WORKERS = 8
IN_FLIGHT = 2 * WORKERS  # packs read but not yet sent, at most (bounds a push's memory)


class CorruptObject(LamflowError):
    """A stored object does not match its digest (exit 1: the store, not the input, is at fault)."""


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while chunk := handle.read(2**20):
            digest.update(chunk)
    return digest.hexdigest()


@dataclass(frozen=True)
class FileEntry:
    path: str  # relative, '/'-separated
    size: int
    sha256: str


def walk(root: Path) -> list[tuple[str, Path, int]]:
    """(relative path, path, size) of every regular file below ``root`` (symlinks followed), by path."""
    root = root.resolve()
    if root.is_file():
        raise UsageError(f"{root}: is a file; a tree is a folder")
    if not root.is_dir():
        raise UsageError(f"{root}: no such folder")
    found: list[tuple[str, Path, int]] = []
    for dirpath, _, filenames in os.walk(root, followlinks=True):
        for name in filenames:
            path = Path(dirpath, name)
            try:
                info = path.stat()  # follows a symlink; a dangling one is passed over
            except OSError:
                continue
            if stat.S_ISREG(info.st_mode):
                found.append((path.relative_to(root).as_posix(), path, info.st_size))
            if len(found) > MAX_FILES:
                raise UsageError(f"{root}: more than {MAX_FILES} files")
    return sorted(found, key=lambda item: item[0])


def scan(root: Path) -> list[FileEntry]:
    """Every regular file below ``root`` (symlinks followed), sorted by path, with its SHA-256."""
    found = walk(root)
    with ThreadPoolExecutor(WORKERS) as pool:
        digests = list(pool.map(lambda item: sha256_file(item[1]), found))
    return [FileEntry(rel, size, d) for (rel, _, size), d in zip(found, digests, strict=True)]


def tree_digest(files: list[FileEntry]) -> str:
    """Content digest of a file list, independent of packing."""
    listing = json.dumps([[f.path, f.size, f.sha256] for f in files], separators=(",", ":"))
    return hashlib.sha256(listing.encode()).hexdigest()


def ends_pack(path: str, size: int) -> bool:
    """Whether a pack closes after this file: with probability size / PACK_TARGET, decided by the path.

    Packs thus average PACK_TARGET bytes, and the decision for one file does not depend on any other
    file, so a changed file moves no boundary but possibly its own.
    """
    draw = int.from_bytes(hashlib.sha256(path.encode()).digest()[:8], "big") / 2**64
    return draw < size / PACK_TARGET


class _Pack:
    """A deterministic uncompressed tar (fixed owner, mode and mtime) built in memory."""

    def __init__(self) -> None:
        self.buffer = io.BytesIO()
        self.tar = tarfile.open(fileobj=self.buffer, mode="w", format=tarfile.PAX_FORMAT)
        self.paths: list[str] = []
        self.size = 0  # bytes of the files in it

    def add(self, path: str, data: bytes) -> None:
        info = tarfile.TarInfo(path)
        info.size = len(data)
        info.mode = 0o644
        info.mtime = 0
        self.tar.addfile(info, io.BytesIO(data))
        self.paths.append(path)
        self.size += len(data)

    def close(self) -> bytes:
        self.tar.close()
        return self.buffer.getvalue()


@dataclass
class Transfer:
    """What a push or pull did (the CLI's ``--output json``)."""

    uri: str
    digest: str
    files: int
    bytes_total: int  # bytes of the files in the tree
    bytes_moved: int = 0  # blob bytes sent or received
    blobs_moved: int = 0
    blobs_total: int = 0


class _Counter:
    def __init__(self, progress: Callable[[int], None] | None) -> None:
        self.total = 0
        self.lock = threading.Lock()
        self.progress = progress

    def __call__(self, n: int) -> None:
        with self.lock:
            self.total += n
        if self.progress is not None:
            self.progress(n)


def manifest_key(name: str) -> str:
    return f"{name.strip('/')}/{MANIFEST}" if name.strip("/") else MANIFEST


@dataclass
class _Sender:
    """Sends blobs the store lacks from a bounded pool of threads; remembers what every blob holds."""

    backend: Backend
    counter: _Counter
    skipped: Callable[[int], None]
    blobs: dict[str, dict[str, Any]] = field(default_factory=dict)
    blob_of: dict[str, str] = field(default_factory=dict)
    sent: int = 0

    def __post_init__(self) -> None:
        self.pool = ThreadPoolExecutor(WORKERS)
        self.window = threading.BoundedSemaphore(IN_FLIGHT)
        self.futures: list[Future[None]] = []
        self.lock = threading.Lock()

    def _submit(self, fn: Callable[[], None]) -> None:
        pending = []
        for future in self.futures:
            if future.done():
                future.result()  # stop reading at the first failed send
            else:
                pending.append(future)
        self.futures = pending
        self.window.acquire()
        future = self.pool.submit(fn)
        future.add_done_callback(lambda _: self.window.release())
        self.futures.append(future)

    def _claim(self, blob_id: str, size: int, kind: str, paths: list[str]) -> bool:
        """Note the blob; True for the first of this push's packs or files to produce it."""
        with self.lock:
            for path in paths:
                self.blob_of[path] = blob_id
            first = blob_id not in self.blobs
            self.blobs[blob_id] = {"size": size, "kind": kind}
            return first

    def _send(
        self, blob_id: str, kind: str, paths: list[str], size: int, held: int, upload: Callable[[], None]
    ) -> None:
        """Upload the blob (``size`` bytes, holding ``held`` bytes of files) unless this push already has it
        or the store holds it: one HEAD per blob, so a push costs the same in a store of any size (a listing
        of every blob grew with every run the store served)."""
        if self._claim(blob_id, size, kind, paths) and not self.backend.exists(f"{BLOBS}/{blob_id}"):
            upload()
            with self.lock:
                self.sent += 1
        else:
            self.skipped(held)

    def file(self, path: Path, rel: str, digest: str, size: int) -> None:
        upload = partial(self.backend.put_file, path, f"{BLOBS}/{digest}", self.counter)
        self._submit(partial(self._send, digest, "file", [rel], size, size, upload))

    def pack(self, pack: _Pack) -> None:
        data, paths, held = pack.close(), pack.paths, pack.size

        def send() -> None:
            blob_id = hashlib.sha256(data).hexdigest()

            def upload() -> None:
                self.backend.put_bytes(f"{BLOBS}/{blob_id}", data, blob_id)
                self.counter(len(data))

            self._send(blob_id, "tar", paths, len(data), held, upload)

        self._submit(send)

    def finish(self) -> None:
        """Wait for every send; the first failed one raises."""
        try:
            for future in self.futures:
                future.result()
        finally:
            self.pool.shutdown(wait=True, cancel_futures=True)

    def abort(self) -> None:
        """Reading failed: drop the sends not started, wait for those under way (their blobs are whole)."""
        self.pool.shutdown(wait=True, cancel_futures=True)


def push(
    root: Path,
    backend: Backend,
    name: str = "",
    progress: Callable[[int], None] | None = None,
    on_plan: Callable[[int], None] | None = None,
    extra: dict[str, Any] | None = None,
) -> Transfer:
    """Store the folder ``root`` as tree ``name`` of ``backend`` (blobs under ``blobs/`` of the backend).

    ``on_plan`` hears the bytes of the files to go through, before the first is read; ``progress`` then
    hears the bytes of each blob sent and, for a blob the store already holds, of the files it holds.
    """
    backend.check()
    found = walk(root)
    if on_plan is not None:
        on_plan(sum(size for _, _, size in found))
    counter = _Counter(progress)
    sender = _Sender(backend, counter, progress or (lambda _: None))
    files: list[FileEntry] = []
    pack = _Pack()
    try:
        for rel, path, size in found:
            data: bytes | None = None  # a large file is read by its upload, not held in memory
            try:
                if size >= SMALL_FILE:
                    digest = sha256_file(path)
                else:
                    data = path.read_bytes()
                    digest = hashlib.sha256(data).hexdigest()
            except OSError as exc:
                raise UsageError(f"{path}: cannot read it ({exc.strerror or exc})") from None
            if data is None:
                sender.file(path, rel, digest, size)
            else:
                size = len(data)
                pack.add(rel, data)
                if ends_pack(rel, size) or pack.size >= PACK_LIMIT:
                    sender.pack(pack)
                    pack = _Pack()
            files.append(FileEntry(rel, size, digest))
        if pack.paths:
            sender.pack(pack)
    except BaseException:
        sender.abort()  # the reading's error, not a later send's, is the one to report
        raise
    sender.finish()
    digest = tree_digest(files)
    manifest = {
        "format": FORMAT,
        "digest": digest,
        "files": [
            {"path": f.path, "size": f.size, "sha256": f.sha256, "blob": sender.blob_of[f.path]}
            for f in files
        ],
        "blobs": dict(sorted(sender.blobs.items())),
        **(extra or {}),
    }
    backend.put_bytes(manifest_key(name), json.dumps(manifest, indent=1).encode())  # last: publishes the tree
    return Transfer(
        backend.child(name),
        digest,
        len(files),
        sum(f.size for f in files),
        counter.total,
        sender.sent,
        len(sender.blobs),
    )


def read_manifest(backend: Backend, name: str = "") -> dict[str, Any]:
    data = backend.get_bytes(manifest_key(name))
    where = backend.child(name)
    if data is None:
        raise UsageError(f"{where}: no dataset or tree here (no {MANIFEST}; push one first)")
    return parse_manifest(data, where)


def parse_manifest(data: bytes, where: str) -> dict[str, Any]:
    """A manifest's content, checked for its format (CorruptObject naming ``where`` otherwise)."""
    try:
        manifest = json.loads(data)
    except ValueError:
        raise CorruptObject(f"{where}/{MANIFEST}: not JSON") from None
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        raise CorruptObject(f"{where}/{MANIFEST}: not a {FORMAT} manifest")
    return manifest


def _mismatch(where: str, path: str) -> CorruptObject:
    return CorruptObject(f"{where}: {path}: content does not match its SHA-256 (corrupted object)")


def _unpack(
    data: bytes, staging: Path, expected: dict[str, dict[str, Any]], blob: str, paths: list[str], where: str
) -> None:
    """Write the files of a verified pack under ``staging``: exactly ``paths``, each checked against its
    manifest entry."""
    view = memoryview(data)
    try:
        with tarfile.open(fileobj=io.BytesIO(data), mode="r:") as tar:
            members = tar.getmembers()
    except tarfile.TarError as exc:
        raise CorruptObject(f"{where}: blob {blob[:12]} is not a readable pack ({exc})") from None
    for member in members:
        entry = expected.get(member.name)
        if entry is None or entry["blob"] != blob or not member.isfile():
            raise CorruptObject(f"{where}: blob {blob[:12]} holds unexpected {member.name!r}")
        content = view[member.offset_data : member.offset_data + member.size]
        if len(content) != entry["size"] or hashlib.sha256(content).hexdigest() != entry["sha256"]:
            raise _mismatch(where, member.name)
        with open(staging / member.name, "wb") as handle:
            handle.write(content)
    missing = sorted(set(paths) - {member.name for member in members})
    if missing:
        raise CorruptObject(f"{where}: {missing[0]} is missing from blob {blob[:12]}")


def pull(
    backend: Backend,
    dest: Path,
    name: str = "",
    progress: Callable[[int], None] | None = None,
    manifest: dict[str, Any] | None = None,
) -> Transfer:
    """Fetch tree ``name`` into ``dest`` (which must not exist, or be an empty folder), verified."""
    backend.check()
    manifest = manifest or read_manifest(backend, name)
    where = backend.child(name)
    if dest.exists() and (not dest.is_dir() or any(dest.iterdir())):
        raise UsageError(f"{dest}: already exists and is not empty (a pull never overwrites)")
    dest.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{dest.name}.pull-", dir=dest.parent))
    counter = _Counter(progress)
    expected = {f["path"]: f for f in manifest["files"]}
    by_blob: dict[str, list[str]] = {}
    for entry in manifest["files"]:
        by_blob.setdefault(entry["blob"], []).append(entry["path"])

    def fetch(item: tuple[str, list[str]]) -> None:
        blob_id, paths = item
        kind = manifest["blobs"][blob_id]["kind"]
        key = f"{BLOBS}/{blob_id}"
        if kind == "file":
            target = staging / paths[0]
            try:
                backend.get_file(key, target, counter)
            except KeyError:
                raise CorruptObject(f"{where}: blob {blob_id[:12]} of {paths[0]} is missing") from None
            if sha256_file(target) != expected[paths[0]]["sha256"]:
                raise _mismatch(where, paths[0])
            return
        data = backend.get_bytes(key)
        more = f" and {len(paths) - 1} more" if len(paths) > 1 else ""
        if data is None:
            raise CorruptObject(f"{where}: blob {blob_id[:12]} ({paths[0]}{more}) is missing")
        counter(len(data))
        if hashlib.sha256(data).hexdigest() != blob_id:
            raise CorruptObject(
                f"{where}: blob {blob_id[:12]} ({paths[0]}{more}) does not match its SHA-256 "
                "(corrupted object)"
            )
        _unpack(data, staging, expected, blob_id, paths, where)

    try:
        for folder in sorted({(staging / path).parent for path in expected}):
            folder.mkdir(parents=True, exist_ok=True)
        with ThreadPoolExecutor(WORKERS) as pool:
            list(pool.map(fetch, sorted(by_blob.items(), key=lambda i: -manifest["blobs"][i[0]]["size"])))
        if dest.exists():
            dest.rmdir()
        os.replace(staging, dest)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return Transfer(
        where,
        manifest["digest"],
        len(manifest["files"]),
        sum(f["size"] for f in manifest["files"]),
        counter.total,
        len(by_blob),
        len(by_blob),
    )


def list_trees(backend: Backend, prefix: str = "") -> list[tuple[str, dict[str, Any]]]:
    """(name, manifest) of every tree at or below ``prefix``."""
    backend.check()
    found = []
    for key in sorted(backend.keys(prefix)):
        if key == MANIFEST or key.endswith("/" + MANIFEST):
            name = key[: -len(MANIFEST)].rstrip("/")
            try:
                found.append((name, read_manifest(backend, name)))
            except LamflowError:
                continue
    return found
