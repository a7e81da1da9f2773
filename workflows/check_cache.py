"""What validate already worked out, remembered on disk by content: the neighbour counts of a dataset's
frames, the training inputs DeePMD-kit's argcheck accepted. Keyed by everything the result depends on
(file sizes and modification times, the DeePMD-kit version, the input itself), so an unchanged spec on
unchanged data validates without redoing them, and any change is worked out again.

Files: ``<cache_dir>/checks/<kind>/<sha256 of the key>.json``. A file that cannot be read or written is a
miss, never an error.
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
import tempfile
from pathlib import Path
from typing import Any

from lamflow.workflows.settings import Settings


@functools.lru_cache(maxsize=8)
def _root(configured: str | None) -> Path:
    return Settings().cache_dir / "checks"  # once per value of LAMFLOW_CACHE_DIR: settings cost ~5 ms


def _file(kind: str, key: Any) -> Path:
    digest = hashlib.sha256(json.dumps(key, sort_keys=True, default=str).encode()).hexdigest()
    return _root(os.environ.get("LAMFLOW_CACHE_DIR")) / kind / f"{digest}.json"


def recall(kind: str, key: Any) -> Any | None:
    """The value remembered for ``key``, or None."""
    try:
        return json.loads(_file(kind, key).read_text())["value"]
    except (OSError, ValueError, KeyError, TypeError):
        return None


def remember(kind: str, key: Any, value: Any) -> None:
    """Store ``value`` for ``key`` (written whole: a temporary file, then a rename)."""
    path = _file(kind, key)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        handle, scratch = tempfile.mkstemp(dir=path.parent, prefix=".tmp-")
        with os.fdopen(handle, "w") as out:
            json.dump({"value": value}, out)
        os.replace(scratch, path)
    except OSError:
        pass
