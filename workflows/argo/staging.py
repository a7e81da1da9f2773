"""Put a plan's staged inputs (dataset bundles, external checkpoints) where Argo's pods read them: plain
objects under ``<store prefix>/inputs/<content digest>/`` in the store's bucket, which the cluster's S3
artifact repository must use too (deploy/). Keys are content digests, so a second submit of the same data
uploads nothing; a ``<digest>.complete`` object written last marks a finished upload (an interrupted one
is redone). Credentials come from the standard AWS chain on this machine, never from the manifest.
"""

from __future__ import annotations

from pathlib import Path

from lamflow.ops.runtime.files import bundle_catalog
from lamflow.workflows.compile.dflow_workflow import staging_requests
from lamflow.workflows.compile.plan import Plan
from lamflow.workflows.store.backends import S3Backend
from lamflow.workflows.store.trees import FileEntry, scan, sha256_file, tree_digest


def _files(request: Path | dict[str, Path]) -> tuple[list[tuple[str, Path]], str]:
    """(relative key, local file) pairs of one staging request and its content digest."""
    if isinstance(request, Path):
        digest = sha256_file(request)
        return [(request.name, request)], digest
    pairs: list[tuple[str, Path]] = []
    entries: list[FileEntry] = []
    for name, root in sorted(request.items()):
        if root.is_file():  # a deepmd/hdf5 dataset
            entry = FileEntry(name, root.stat().st_size, sha256_file(root))
            entries.append(entry)
            pairs.append((name, root))
            continue
        for entry in scan(root):
            entries.append(FileEntry(f"{name}/{entry.path}", entry.size, entry.sha256))
            pairs.append((f"{name}/{entry.path}", root / entry.path))
    return pairs, tree_digest(entries)


def stage_inputs(plan: Plan, backend: S3Backend) -> dict[str, str]:
    """Upload what the plan's steps read from outside the workflow; returns staging request id -> the
    bucket key a pod's artifact names (a folder for dataset bundles, the file for a checkpoint)."""
    keys: dict[str, str] = {}
    for request_id, request in staging_requests(plan).items():
        pairs, digest = _files(request)
        folder = f"inputs/{digest}"
        if not backend.exists(f"{folder}.complete"):
            for relative, path in pairs:
                backend.put_file(path, f"{folder}/{relative}")
            if not isinstance(request, Path):  # a {name: folder} bundle: dflow's catalog of its names
                backend.put_bytes(f"{folder}/.dflow/lamflow-inputs", bundle_catalog(sorted(request)).encode())
            backend.put_bytes(f"{folder}.complete", b"")
        full = backend._key(folder)
        keys[request_id] = f"{full}/{pairs[0][0]}" if isinstance(request, Path) else full
    return keys
