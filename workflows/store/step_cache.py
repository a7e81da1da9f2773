"""The content-addressed step cache: a step whose inputs were seen before is not run again.

A step's cache key hashes its op, its typed parameters (canonical JSON), what its input artifacts are —
the content digest of a dataset or file (of a dataset the workflow converts too: validate converted it
the same way), or the cache key of the step that produces it — and the versions
of lamflow and DeePMD-kit (the ``dp`` program too, when ``LAMFLOW_DP`` replaces it). Keys therefore chain:
changing a fine-tune parameter changes the fine-tune key and every key downstream of it, nothing upstream.

A finished step's ``outputs/`` folder (output parameters and artifacts) is stored as a tree
``steps/<key>`` of the store; its manifest is written last, so an entry is either complete or absent.
"""

from __future__ import annotations

import hashlib
import json
import os
from importlib import metadata
from pathlib import Path
from typing import Any

from lamflow.workflows.compile.plan import ConvertedDatasets, DatasetBundle, LocalFile, Plan, StepOutput
from lamflow.workflows.store import trees
from lamflow.workflows.store.backends import Backend

KEY_VERSION = 1  # bump when the key recipe changes: old entries are then never matched


def _version(package: str) -> str | None:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return None


def toolchain() -> dict[str, str | None]:
    """What produced a result besides its inputs: lamflow, DeePMD-kit, and a replacement ``dp``."""
    return {
        "lamflow": _version("lamflow"),
        "deepmd-kit": _version("deepmd-kit"),
        "dp": os.environ.get("LAMFLOW_DP"),
    }


def content_digest(path: Path) -> str:
    """SHA-256 of a file, or the tree digest of a folder (paths, sizes and contents of its files)."""
    if path.is_file():
        return trees.sha256_file(path)
    return trees.tree_digest(trees.scan(path))


def _hash(value: Any) -> str:
    text = json.dumps(value, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode()).hexdigest()


class Digests:
    """Content digests of files and folders, each computed once."""

    def __init__(self) -> None:
        self.known: dict[Path, str] = {}

    def __call__(self, path: Path) -> str:
        if path not in self.known:
            self.known[path] = content_digest(path)
        return self.known[path]


def cache_keys(
    plan: Plan, tools: dict[str, str | None] | None = None, digest: Digests | None = None
) -> dict[str, str]:
    """Step key -> cache key for every step of ``plan`` (reads the datasets and files to digest them)."""
    tools = tools if tools is not None else toolchain()
    digest = digest or Digests()

    keys: dict[str, str] = {}
    for step in plan.steps:
        if any(dep not in keys for dep in step.depends):
            continue  # it reads a loop's output (known once the loop stopped: compile/loops.py)
        inputs: dict[str, Any] = {}
        for name, source in sorted(step.artifacts.items()):
            if isinstance(source, DatasetBundle | ConvertedDatasets):  # converted: what validate converted
                inputs[name] = {n: digest(plan.dataset_paths[n]) for n in source.names}
            elif isinstance(source, StepOutput):
                inputs[name] = {"step": keys[source.step], "output": source.name}
            elif isinstance(source, LocalFile):
                inputs[name] = {"file": digest(source.path)}
        keys[step.key] = _hash(
            {
                "v": KEY_VERSION,
                "op": step.op.name,
                "parameters": step.parameters,
                "inputs": inputs,
                "tools": tools,
            }
        )
    return keys


def entry_name(key: str) -> str:
    return f"steps/{key}"


class StepCache:
    """Stored step results in an artifact store (``backend``)."""

    def __init__(self, backend: Backend) -> None:
        self.backend = backend

    def lookup(self, key: str) -> dict[str, Any] | None:
        """The complete stored result for ``key`` (its manifest), or None."""
        name = entry_name(key)
        data = self.backend.get_bytes(trees.manifest_key(name))
        if data is None:
            return None
        try:
            return trees.parse_manifest(data, self.backend.child(name))
        except trees.CorruptObject:  # unreadable: a miss (the step runs and stores it again)
            return None

    def restore(self, key: str, manifest: dict[str, Any], outputs_dir: Path) -> None:
        """Write the stored outputs into ``outputs_dir`` (absent or empty), verified."""
        trees.pull(self.backend, outputs_dir, entry_name(key), manifest=manifest)

    def publish(
        self, key: str, outputs_dir: Path, step: str, warnings: list[str] | None = None
    ) -> trees.Transfer:
        """Store a finished step's ``outputs/`` folder (symlinks followed) under ``key``, with the warnings
        its run gave (a run that reuses the result shows them again)."""
        extra = {"kind": "step", "step": step, "warnings": list(warnings or [])}
        return trees.push(outputs_dir, self.backend, entry_name(key), extra=extra)
