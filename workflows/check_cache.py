"""What validate already worked out, remembered on disk by content: the neighbour counts of a dataset's
frames, the training inputs DeePMD-kit's argcheck accepted. Keyed by everything the result depends on
(file sizes and modification times, the DeePMD-kit version, the input itself), so an unchanged spec on
unchanged data validates without redoing them, and any change is worked out again.

Files: ``<cache_dir>/checks/<kind>/<sha256 of the key>.json``. A file that cannot be read or written is a
miss, never an error. A process also keeps the last :data:`IN_MEMORY` results it read or wrote, by the
same keys (a process that validates again — a notebook, the test suite — reads no file for them).
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
import tempfile
import threading
from collections import OrderedDict
from pathlib import Path
from typing import Any

from lamflow.workflows.settings import Settings


@functools.lru_cache(maxsize=8)
def _root(configured: str | None) -> Path:
    return Settings().cache_dir / "checks"  # once per value of LAMFLOW_CACHE_DIR: settings cost ~5 ms


IN_MEMORY = 4096
_memory: OrderedDict[tuple[str, str], str] = OrderedDict()  # (kind, digest) -> the value as JSON
_memory_lock = threading.Lock()


def _digest(key: Any) -> str:
    return hashlib.sha256(json.dumps(key, sort_keys=True, default=str).encode()).hexdigest()


def _file(kind: str, digest: str) -> Path:
    return _root(os.environ.get("LAMFLOW_CACHE_DIR")) / kind / f"{digest}.json"


def _keep(kind: str, digest: str, text: str) -> None:
    with _memory_lock:
        _memory[(kind, digest)] = text
        _memory.move_to_end((kind, digest))
        while len(_memory) > IN_MEMORY:
            _memory.popitem(last=False)


def recall(kind: str, key: Any) -> Any | None:
    """The value remembered for ``key``, or None (a fresh copy: the caller may change it)."""
    digest = _digest(key)
    with _memory_lock:
        text = _memory.get((kind, digest))
    try:
        if text is not None:
            return json.loads(text)
        value = json.loads(_file(kind, digest).read_text())["value"]
    except (OSError, ValueError, KeyError, TypeError):
        return None
    _keep(kind, digest, json.dumps(value))
    return value


def remember(kind: str, key: Any, value: Any) -> None:
    """Store ``value`` for ``key`` (written whole: a temporary file, then a rename)."""
    digest, text = _digest(key), json.dumps(value)
    _keep(kind, digest, text)
    path = _file(kind, digest)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        handle, scratch = tempfile.mkstemp(dir=path.parent, prefix=".tmp-")
        with os.fdopen(handle, "w") as out:
            out.write(f'{{"value": {text}}}')
        os.replace(scratch, path)
    except OSError:
        pass
