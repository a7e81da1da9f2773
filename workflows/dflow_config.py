"""The one place lamflow touches dflow's module-level ``config``/``s3_config`` dicts.

dflow reads these globals while templates are built and steps run; lamflow sets them for the duration of
a ``with`` block from explicit arguments and restores them afterwards, so nothing leaks between calls.
"""

from __future__ import annotations

import copy
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any


@contextmanager
def dflow_config(config: dict[str, Any] | None = None, s3: dict[str, Any] | None = None) -> Iterator[None]:
    import dflow

    saved = copy.copy(dflow.config), copy.copy(dflow.s3_config)
    dflow.config.update(config or {})
    dflow.s3_config.update(s3 or {})
    try:
        yield
    finally:
        dflow.config.clear()
        dflow.config.update(saved[0])
        dflow.s3_config.clear()
        dflow.s3_config.update(saved[1])


def local_debug_config(workdir: str, artifact_dir: str, workers: int) -> dict[str, Any]:
    """dflow settings for running a workflow as local subprocesses (debug mode) under ``workdir``."""
    return {
        "mode": "debug",
        "debug_workdir": workdir,
        "debug_artifact_dir": artifact_dir,
        "debug_pool_workers": workers,
        "debug_copy_method": "symlink",
        "debug_failfast": True,
    }
