"""Where store objects live: a local directory or an S3 bucket (boto3), behind one small interface.

Keys are ``/``-separated and relative to the location's root. Every write is atomic for a reader: a local
file is written under a temporary name and renamed; an S3 object appears whole when its upload completes.
S3 endpoint, region and credentials come from the standard AWS chain (``AWS_ENDPOINT_URL``,
``AWS_PROFILE``, ``AWS_ACCESS_KEY_ID``/``AWS_SECRET_ACCESS_KEY``, instance roles); lamflow adds none.
"""

from __future__ import annotations

import base64
import os
import shutil
import tempfile
import threading
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from lamflow.ops.runtime import s3
from lamflow.workflows.errors import LamflowError, UsageError

Progress = Callable[[int], None]  # called with the number of bytes just moved


class StoreUnreachable(LamflowError):
    """The store's service did not answer (after retries): exit 1, the input itself may be fine."""


def _noop(_: int) -> None:
    pass


class Backend(ABC):
    """A flat key -> bytes namespace under one root (``uri``)."""

    uri: str

    @abstractmethod
    def exists(self, key: str) -> bool: ...

    @abstractmethod
    def keys(self, prefix: str) -> Iterator[str]:
        """Every key that starts with ``prefix``."""

    @abstractmethod
    def put_file(self, path: Path, key: str, progress: Progress = _noop) -> None: ...

    @abstractmethod
    def get_file(self, key: str, path: Path, progress: Progress = _noop) -> None:
        """Write the object to ``path`` (its folder exists); a missing key raises KeyError."""

    @abstractmethod
    def put_bytes(self, key: str, data: bytes, sha256: str | None = None) -> None:
        """Store ``data``; ``sha256``, its digest if the caller has it, lets the service verify it."""

    @abstractmethod
    def get_bytes(self, key: str) -> bytes | None:
        """The object, or None when there is none."""

    @abstractmethod
    def delete(self, key: str) -> None: ...

    def check(self) -> None:  # noqa: B027 (optional hook: locations that need no check keep this)
        """Raise a one-line error now if the location cannot be used (before any work)."""

    def child(self, key: str) -> str:
        """The URI of ``key`` (the location itself for an empty key)."""
        return f"{self.uri.rstrip('/')}/{key}" if key else self.uri


class LocalBackend(Backend):
    """A directory. Objects are files; writes go to a temporary name in the same folder, then rename."""

    def __init__(self, root: Path) -> None:
        self.root = root.expanduser().resolve()
        self.uri = str(self.root)

    def _path(self, key: str) -> Path:
        path = (self.root / key).resolve()
        if path != self.root and self.root not in path.parents:
            raise UsageError(f"{self.uri}: key {key!r} leaves the store")
        return path

    def check(self) -> None:
        try:
            self.root.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise UsageError(f"store {self.uri}: cannot create it ({exc.strerror})") from None
        if not os.access(self.root, os.W_OK):
            raise UsageError(f"store {self.uri}: not writable")

    def exists(self, key: str) -> bool:
        return self._path(key).is_file()

    def keys(self, prefix: str) -> Iterator[str]:
        base = self._path(prefix.rsplit("/", 1)[0]) if "/" in prefix else self.root
        if not base.is_dir():
            return
        for dirpath, _, filenames in os.walk(base):
            for name in filenames:
                if name.startswith(".tmp-"):
                    continue
                key = Path(dirpath, name).relative_to(self.root).as_posix()
                if key.startswith(prefix):
                    yield key

    def _atomic(self, key: str, write: Callable[[Path], object]) -> None:
        target = self._path(key)
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=".tmp-", dir=target.parent)
        os.close(fd)
        try:
            write(Path(tmp))
            os.chmod(tmp, 0o444)  # store objects are immutable; hard links to them stay read-only
            os.replace(tmp, target)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise

    def put_file(self, path: Path, key: str, progress: Progress = _noop) -> None:
        self._atomic(key, lambda tmp: shutil.copyfile(path, tmp))
        progress(path.stat().st_size)

    def get_file(self, key: str, path: Path, progress: Progress = _noop) -> None:
        source = self._path(key)
        if not source.is_file():
            raise KeyError(key)
        try:
            os.link(source, path)  # same file system: no copy (the object is read-only)
        except OSError:
            shutil.copyfile(source, path)
        progress(source.stat().st_size)

    def put_bytes(self, key: str, data: bytes, sha256: str | None = None) -> None:
        self._atomic(key, lambda tmp: tmp.write_bytes(data))

    def get_bytes(self, key: str) -> bytes | None:
        try:
            return self._path(key).read_bytes()
        except (FileNotFoundError, IsADirectoryError):
            return None

    def delete(self, key: str) -> None:
        self._path(key).unlink(missing_ok=True)


# transient faults (throttling, 5xx, dropped connections) are retried by botocore itself
MAX_ATTEMPTS = 8  # AWS_MAX_ATTEMPTS overrides it
CONFIG_ERRORS = {
    "NoSuchBucket": "no such bucket",
    "InvalidAccessKeyId": "unknown access key (check AWS_ACCESS_KEY_ID / AWS_PROFILE)",
    "SignatureDoesNotMatch": "the secret key is wrong (check AWS_SECRET_ACCESS_KEY / AWS_PROFILE)",
    "AccessDenied": "access denied (check the credentials' permissions on this bucket)",
    "InvalidBucketName": "not a valid bucket name",
    "403": "access denied (check the credentials)",
    "404": "no such bucket",
}


class S3Backend(Backend):
    """``s3://bucket/prefix`` through boto3 (multipart and concurrent transfers by its transfer manager)."""

    def __init__(self, bucket: str, prefix: str, max_attempts: int | None = None) -> None:
        from boto3.s3.transfer import TransferConfig
        from botocore.config import Config

        self.bucket = bucket
        self.prefix = prefix.strip("/")
        self.uri = f"s3://{bucket}/{self.prefix}".rstrip("/")
        attempts = max_attempts or int(os.environ.get("AWS_MAX_ATTEMPTS") or MAX_ATTEMPTS)
        config = Config(
            retries={"mode": "standard", "max_attempts": attempts},
            max_pool_connections=32,
            connect_timeout=5,
            read_timeout=60,
            # Bodies are not hashed again for the signature: an upload carries a checksum instead (the
            # blob's SHA-256 where the caller has it, else botocore's CRC32), which S3 verifies; and a
            # download is not checked by botocore, since every byte a pull reads is checked by SHA-256.
            s3={"payload_signing_enabled": False},
            response_checksum_validation="when_required",
        )
        self.client = s3.client(config)
        self.transfer = TransferConfig(
            multipart_threshold=16 * 2**20, multipart_chunksize=16 * 2**20, max_concurrency=8
        )
        self._checked = False
        self._lock = threading.Lock()

    def _key(self, key: str) -> str:
        return f"{self.prefix}/{key}" if self.prefix else key

    def _call(self, what: str, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        """Run one boto3 call; configuration errors exit 2, an unreachable service exits 1."""
        from botocore.exceptions import (
            BotoCoreError,
            ClientError,
            EndpointConnectionError,
            NoCredentialsError,
        )

        try:
            return fn(*args, **kwargs)
        except ClientError as exc:
            code = str(exc.response.get("Error", {}).get("Code", ""))
            if code in ("NoSuchKey",) or (code == "404" and what != "bucket"):
                raise KeyError(what) from None
            if code in CONFIG_ERRORS:
                raise UsageError(f"store {self.uri}: {CONFIG_ERRORS[code]}") from None
            status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0)
            if status >= 500:
                raise StoreUnreachable(
                    f"store {self.uri}: {what}: service error {code} after retries"
                ) from None
            raise UsageError(f"store {self.uri}: {what}: {code or exc}") from None
        except NoCredentialsError:
            raise UsageError(
                f"store {self.uri}: no AWS credentials "
                "(set AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY or AWS_PROFILE)"
            ) from None
        except EndpointConnectionError as exc:
            raise StoreUnreachable(
                f"store {self.uri}: cannot reach {exc.kwargs.get('endpoint_url')}"
            ) from None
        except BotoCoreError as exc:
            raise StoreUnreachable(f"store {self.uri}: {what}: {exc}") from None

    def check(self) -> None:
        with self._lock:
            if not self._checked:
                try:
                    self._call("bucket", self.client.head_bucket, Bucket=self.bucket)
                except UsageError as refused:
                    if CONFIG_ERRORS["403"] not in str(refused):
                        raise
                    # a HEAD answer has no body, so no error code: ask once more in a way that says which
                    # credential is wrong (unknown key id, wrong secret, or no permission)
                    self._call("bucket", self.client.list_objects_v2, Bucket=self.bucket, MaxKeys=1)
                    raise
                self._checked = True

    def exists(self, key: str) -> bool:
        try:
            self._call(key, self.client.head_object, Bucket=self.bucket, Key=self._key(key))
            return True
        except KeyError:
            return False

    def keys(self, prefix: str) -> Iterator[str]:
        paginator = self.client.get_paginator("list_objects_v2")
        strip = len(self._key(""))
        pages = self._call(
            prefix, lambda: list(paginator.paginate(Bucket=self.bucket, Prefix=self._key(prefix)))
        )
        for page in pages:
            for item in page.get("Contents", []):
                yield item["Key"][strip:]

    def put_file(self, path: Path, key: str, progress: Progress = _noop) -> None:
        self._call(
            key,
            self.client.upload_file,
            str(path),
            self.bucket,
            self._key(key),
            Config=self.transfer,
            Callback=progress,
        )

    def get_file(self, key: str, path: Path, progress: Progress = _noop) -> None:
        self._call(
            key,
            self.client.download_file,
            self.bucket,
            self._key(key),
            str(path),
            Config=self.transfer,
            Callback=progress,
        )

    def put_bytes(self, key: str, data: bytes, sha256: str | None = None) -> None:
        checksum = {"ChecksumSHA256": base64.b64encode(bytes.fromhex(sha256)).decode()} if sha256 else {}
        self._call(key, self.client.put_object, Bucket=self.bucket, Key=self._key(key), Body=data, **checksum)

    def get_bytes(self, key: str) -> bytes | None:
        try:
            response = self._call(key, self.client.get_object, Bucket=self.bucket, Key=self._key(key))
        except KeyError:
            return None
        return self._call(key, response["Body"].read)

    def delete(self, key: str) -> None:
        self._call(key, self.client.delete_object, Bucket=self.bucket, Key=self._key(key))


def open_location(uri: str | Path, max_attempts: int | None = None) -> Backend:
    """``s3://bucket/prefix`` -> :class:`S3Backend`; anything else is a local directory."""
    text = str(uri)
    if text.startswith("s3://"):
        bucket, _, prefix = text[len("s3://") :].partition("/")
        if not bucket:
            raise UsageError(f"{text}: no bucket (expected s3://bucket/prefix)")
        return S3Backend(bucket, prefix, max_attempts)
    if "://" in text:
        raise UsageError(f"{text}: unsupported store (use a directory or s3://bucket/prefix)")
    return LocalBackend(Path(text))
