"""lamflow's S3 store as dflow's storage client: dflow's own artifact calls (``upload_artifact``,
``download_artifact``, catalogs) then go through the same boto3 client, AWS credential chain, retry
settings and transfer manager as ``lamflow data`` and the Argo engine, instead of dflow's MinIO client
configured with keys in ``s3_config`` (which dflow would also write into every step script).

``use_store_with_dflow(settings)`` plugs it in for the duration of a ``with`` block.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from dflow.utils import StorageClient

from lamflow.workflows.settings import Settings
from lamflow.workflows.store.backends import S3Backend


class StoreStorageClient(StorageClient):
    """dflow keys are keys of the store's bucket (dflow adds its own prefix)."""

    def __init__(self, backend: S3Backend) -> None:
        self.backend = backend
        self.bucket = backend.bucket

    def upload(self, key: str, path: str) -> None:
        self.backend._call(
            key, self.backend.client.upload_file, path, self.bucket, key, Config=self.backend.transfer
        )

    def download(self, key: str, path: str) -> None:
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        self.backend._call(
            key, self.backend.client.download_file, self.bucket, key, path, Config=self.backend.transfer
        )

    def list(self, prefix: str, recursive: bool = False) -> list[str]:
        paginator = self.backend.client.get_paginator("list_objects_v2")
        options: dict[str, Any] = {"Bucket": self.bucket, "Prefix": prefix}
        if not recursive:
            options["Delimiter"] = "/"
        found: list[str] = []
        for page in paginator.paginate(**options):
            found += [item["Key"] for item in page.get("Contents", [])]
            found += [item["Prefix"] for item in page.get("CommonPrefixes", [])]
        return found

    def copy(self, src: str, dst: str) -> None:
        source = {"Bucket": self.bucket, "Key": src}
        self.backend._call(dst, self.backend.client.copy, source, self.bucket, dst)

    def get_md5(self, key: str) -> str:
        head = self.backend._call(key, self.backend.client.head_object, Bucket=self.bucket, Key=key)
        return str(head["ETag"]).strip('"')


@contextmanager
def use_store_with_dflow(settings: Settings) -> Iterator[StoreStorageClient]:
    """Inside the block dflow's S3 calls use the configured ``s3://`` store (its bucket as dflow's bucket)."""
    from dflow import s3_config

    from lamflow.workflows.store.locate import s3_store

    backend = s3_store(settings, "dflow's storage")
    client = StoreStorageClient(backend)
    saved = {k: s3_config[k] for k in ("storage_client", "bucket_name", "repo_type")}
    s3_config.update(storage_client=client, bucket_name=backend.bucket, repo_type="s3")
    try:
        yield client
    finally:
        s3_config.update(saved)
