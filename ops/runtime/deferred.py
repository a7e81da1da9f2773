"""Third-party packages imported on first use instead of at import: dflow imports ``kubernetes`` whole
(0.15-0.25 s: its API client, its dynamic client, its websocket stream) to create Secrets and ConfigMaps
and to read pods on a cluster, which no lamflow process needs before it talks to Kubernetes itself — not
``validate``, not the step launcher, not a step.

:func:`defer` puts a stand-in module in ``sys.modules``: ``import name`` binds the stand-in, and the first
read of an attribute it lacks (``kubernetes.client``, ``from kubernetes import config``, an
``import kubernetes.client``) runs the real import, after which the stand-in forwards to the real module.
(``importlib.util.LazyLoader`` does not serve here: Python 3.11's import statement reads ``__spec__`` of a
module already in ``sys.modules``, which makes a lazy module load at dflow's ``import kubernetes``.)
Called by :mod:`lamflow.ops`, the package every dflow import in lamflow comes after.
"""

from __future__ import annotations

import importlib
import importlib.util
import sys
import threading
import types
from typing import Any

DEFERRED = ("kubernetes",)
_LOCK = threading.RLock()


class _Deferred(types.ModuleType):
    """Stands in for a module until an attribute it does not hold is read."""

    def __getattr__(self, attr: str) -> Any:
        return getattr(_load(self), attr)


def _load(stand_in: _Deferred) -> types.ModuleType:
    name = stand_in.__name__
    with _LOCK:
        real = stand_in.__dict__.get("_deferred_real")
        if real is None:
            if sys.modules.get(name) is stand_in:
                del sys.modules[name]
            real = importlib.import_module(name)
            stand_in.__dict__["_deferred_real"] = real
        return real


def defer(name: str) -> bool:
    """Make ``import name`` cheap until its first use; False (nothing done) when ``name`` is imported
    already or not installed."""
    with _LOCK:
        if name in sys.modules:
            return False
        spec = importlib.util.find_spec(name)
        if spec is None:
            return False
        stand_in = _Deferred(name)
        stand_in.__spec__ = None  # not a module being initialised: the import system leaves it be
        sys.modules[name] = stand_in
        return True


def loaded(name: str) -> bool:
    """Whether the real ``name`` has been imported (a deferred one: whether it has been used)."""
    module = sys.modules.get(name)
    if isinstance(module, _Deferred):
        return "_deferred_real" in module.__dict__
    return module is not None


def defer_all() -> None:
    for name in DEFERRED:
        defer(name)
