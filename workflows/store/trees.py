"""Folders in a store: a manifest (relative path, size, SHA-256 per file) plus content-addressed blobs.

Small files (a deepmd/npy set holds many) are packed per folder into uncompressed tar blobs; large files
are blobs of their own, moved with multipart, concurrent transfers. A push sends only the blobs the store
lacks and writes the manifest last, so an interrupted push never leaves a manifest pointing at missing
blobs. A pull verifies every file against the manifest in a temporary folder and renames it into place,
so a corrupted object leaves the destination untouched.

The tree's *digest* hashes the file list (paths, sizes, SHA-256s) only, not how it was packed: the same
files have the same digest wherever they come from.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import shutil
import tarfile
import tempfile
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lamflow.workflows.errors import LamflowError, UsageError
from lamflow.workflows.store.backends import Backend

FORMAT = "lamflow-tree/1"
MANIFEST = "manifest.json"
BLOBS = "blobs"
SMALL_FILE = 4 * 2**20  # files below this are packed
PACK_LIMIT = 64 * 2**20  # a pack is closed past this size
MAX_FILES = 1_000_000
WORKERS = 8


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


def scan(root: Path) -> list[FileEntry]:
    """Every regular file below ``root`` (symlinks followed), sorted by path, with its SHA-256."""
    root = root.resolve()
    if root.is_file():
        raise UsageError(f"{root}: is a file; a tree is a folder")
    if not root.is_dir():
        raise UsageError(f"{root}: no such folder")
    found: list[tuple[str, Path]] = []
    for dirpath, dirnames, filenames in os.walk(root, followlinks=True):
        dirnames.sort()
        for name in filenames:
            path = Path(dirpath, name)
            if path.is_file():
                found.append((path.relative_to(root).as_posix(), path))
            if len(found) > MAX_FILES:
                raise UsageError(f"{root}: more than {MAX_FILES} files")
    with ThreadPoolExecutor(WORKERS) as pool:
        digests = list(pool.map(lambda item: sha256_file(item[1]), found))
    return sorted(
        (FileEntry(rel, path.stat().st_size, d) for (rel, path), d in zip(found, digests, strict=True)),
        key=lambda e: e.path,
    )


def tree_digest(files: list[FileEntry]) -> str:
    """Content digest of a file list, independent of packing."""
    listing = json.dumps([[f.path, f.size, f.sha256] for f in files], separators=(",", ":"))
    return hashlib.sha256(listing.encode()).hexdigest()


def _pack(root: Path, entries: list[FileEntry]) -> bytes:
    """A deterministic uncompressed tar of ``entries`` (fixed owner, mode and mtime)."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for entry in entries:
            info = tarfile.TarInfo(entry.path)
            info.size = entry.size
            info.mode = 0o644
            info.mtime = 0
            with (root / entry.path).open("rb") as handle:
                tar.addfile(info, handle)
    return buffer.getvalue()


@dataclass
class Blob:
    id: str  # sha256 of its bytes
    size: int
    kind: str  # "file" (one file's bytes) or "tar" (a pack of small files)
    files: list[str]
    data: bytes | None = None  # packs are built in memory
    source: Path | None = None  # single-file blobs are read from disk


def plan_blobs(root: Path, files: list[FileEntry]) -> list[Blob]:
    """Large files as their own blobs; small ones packed per folder (packs capped at PACK_LIMIT)."""
    blobs: list[Blob] = []
    groups: dict[str, list[FileEntry]] = {}
    for entry in files:
        if entry.size >= SMALL_FILE:
            blobs.append(Blob(entry.sha256, entry.size, "file", [entry.path], source=root / entry.path))
        else:
            groups.setdefault(entry.path.rpartition("/")[0], []).append(entry)
    chunks: list[list[FileEntry]] = []
    for members in groups.values():
        chunks.append([])
        size = 0
        for entry in members:
            if chunks[-1] and size + entry.size > PACK_LIMIT:
                chunks.append([])
                size = 0
            chunks[-1].append(entry)
            size += entry.size
    for chunk in chunks:
        data = _pack(root, chunk)
        blobs.append(Blob(hashlib.sha256(data).hexdigest(), len(data), "tar", [e.path for e in chunk], data))
    return blobs


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


def push(
    root: Path,
    backend: Backend,
    name: str = "",
    progress: Callable[[int], None] | None = None,
    on_plan: Callable[[int], None] | None = None,
    extra: dict[str, Any] | None = None,
) -> Transfer:
    """Store the folder ``root`` as tree ``name`` of ``backend`` (blobs under ``blobs/`` of the backend).

    ``on_plan`` hears the number of bytes that will be sent, before sending starts.
    """
    backend.check()
    files = scan(root)
    blobs = plan_blobs(root.resolve(), files)
    present = {k.rsplit("/", 1)[-1] for k in backend.keys(f"{BLOBS}/")}
    missing = {b.id: b for b in blobs if b.id not in present}.values()
    if on_plan is not None:
        on_plan(sum(b.size for b in missing))
    counter = _Counter(progress)

    def send(blob: Blob) -> None:
        key = f"{BLOBS}/{blob.id}"
        if blob.source is not None:
            backend.put_file(blob.source, key, counter)
        else:
            assert blob.data is not None
            backend.put_bytes(key, blob.data)
            counter(len(blob.data))

    # big blobs first: each is already split into concurrent parts by the transfer manager
    ordered = sorted(missing, key=lambda b: -b.size)
    with ThreadPoolExecutor(WORKERS) as pool:
        list(pool.map(send, ordered))
    digest = tree_digest(files)
    blob_of = {path: blob.id for blob in blobs for path in blob.files}
    manifest = {
        "format": FORMAT,
        "digest": digest,
        "files": [
            {"path": f.path, "size": f.size, "sha256": f.sha256, "blob": blob_of[f.path]} for f in files
        ],
        "blobs": {b.id: {"size": b.size, "kind": b.kind} for b in blobs},
        **(extra or {}),
    }
    backend.put_bytes(manifest_key(name), json.dumps(manifest, indent=1).encode())  # last: publishes the tree
    return Transfer(
        backend.child(name),
        digest,
        len(files),
        sum(f.size for f in files),
        counter.total,
        len(ordered),
        len(blobs),
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
            target.parent.mkdir(parents=True, exist_ok=True)
            try:
                backend.get_file(key, target, counter)
            except KeyError:
                raise CorruptObject(f"{where}: blob {blob_id[:12]} of {paths[0]} is missing") from None
        else:
            data = backend.get_bytes(key)
            if data is None:
                raise CorruptObject(f"{where}: blob {blob_id[:12]} of {paths[0]} and others is missing")
            counter(len(data))
            if hashlib.sha256(data).hexdigest() != blob_id:
                more = f" and {len(paths) - 1} more" if len(paths) > 1 else ""
                raise CorruptObject(
                    f"{where}: blob {blob_id[:12]} ({paths[0]}{more}) does not match its SHA-256 "
                    "(corrupted object)"
                )
            with tarfile.open(fileobj=io.BytesIO(data), mode="r:") as tar:
                for member in tar.getmembers():
                    if member.name not in expected or not member.isfile():
                        raise CorruptObject(f"{where}: blob {blob_id[:12]} holds unexpected {member.name!r}")
                    target = staging / member.name
                    target.parent.mkdir(parents=True, exist_ok=True)
                    handle = tar.extractfile(member)
                    assert handle is not None
                    target.write_bytes(handle.read())
        for path in paths:
            target = staging / path
            if not target.is_file():
                raise CorruptObject(f"{where}: {path} is missing from blob {blob_id[:12]}")
            if sha256_file(target) != expected[path]["sha256"]:
                raise CorruptObject(f"{where}: {path}: content does not match its SHA-256 (corrupted object)")

    try:
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
