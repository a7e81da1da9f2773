"""From settings and URIs to store locations; remote datasets into this machine's digest-keyed cache.

The store (``LAMFLOW_STORE``) is one location shared by every run of a user: ``blobs/`` (content-addressed,
shared by everything below), ``steps/<cache key>/`` (step results), ``registry/`` (models), and any
datasets pushed under it. A URI inside the store is a tree *name* in it (its blobs are shared); any other
URI is a location of its own.
"""

from __future__ import annotations

from pathlib import Path

from lamflow.workflows.errors import UsageError
from lamflow.workflows.settings import Settings
from lamflow.workflows.store import trees
from lamflow.workflows.store.backends import Backend, S3Backend, open_location


def _normal(uri: str) -> str:
    return uri.rstrip("/") if uri.startswith("s3://") else str(Path(uri).expanduser().resolve())


def store_backend(settings: Settings) -> Backend:
    return open_location(settings.store)


def s3_store(settings: Settings, user: str) -> S3Backend:
    """The store, which ``user`` (what needs it, for the message) can only use on S3; checked (bucket,
    credentials, endpoint) so that a bad one is one line, not an error of the first transfer."""
    backend = store_backend(settings)
    if not isinstance(backend, S3Backend):
        raise UsageError(f"LAMFLOW_STORE={settings.store}: {user} needs an s3://bucket/prefix store")
    backend.check()
    return backend


def locate(uri: str, settings: Settings) -> tuple[Backend, str]:
    """(backend, tree name) for a dataset URI or directory; inside the store it shares the store's blobs."""
    store, target = _normal(settings.store), _normal(uri)
    if target.startswith(store + "/"):
        return open_location(store), target[len(store) + 1 :]
    return open_location(target), ""


def fetch_dataset(uri: str, settings: Settings) -> Path:
    """This machine's verified copy of a pushed dataset, pulled once into <cache_dir>/datasets/<digest>."""
    backend, name = locate(uri, settings)
    manifest = trees.read_manifest(backend, name)
    dest = settings.cache_dir / "datasets" / manifest["digest"]
    if dest.is_dir():
        return dest
    try:
        trees.pull(backend, dest, name, manifest=manifest)
    except OSError:
        if not dest.is_dir():  # not another pull that finished first
            raise
    return dest
