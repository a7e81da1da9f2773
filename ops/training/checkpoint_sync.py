"""Carry a training step's checkpoints from one pod to the next.

With ``LAMFLOW_CHECKPOINT_URI=s3://bucket/prefix`` set — the Argo renderer sets it on training templates,
one prefix per workflow and step — :class:`Uploader` copies the newest complete ``model.ckpt-<step>.pt``,
``out.json`` and ``lcurve.out`` there while ``dp train`` runs (and once more when it ends), and
:func:`restore` puts them into the working directory of a retried pod that has none, so that the step
continues with ``dp --pt train --restart`` from where the lost pod stopped instead of from step 0.
S3 is reached with boto3 and the standard AWS chain (the pod's environment, from a Kubernetes secret).
Without the variable both do nothing: local runs resume from their own directory.
"""

from __future__ import annotations

import os
import sys
import threading
from pathlib import Path
from typing import Any

from lamflow.ops.runtime import files, s3
from lamflow.ops.training.checkpoint import CHECKPOINT_PATTERN, latest_checkpoint

URI_ENV = "LAMFLOW_CHECKPOINT_URI"
INTERVAL_ENV = "LAMFLOW_CHECKPOINT_SYNC_S"
INTERVAL_S = 60.0
COMPANIONS = (files.COMPLETED_INPUT, files.LCURVE)  # what a restart reads besides the checkpoint


def split_uri(uri: str, name: str) -> tuple[str, str]:
    """``s3://bucket/prefix`` -> (bucket, prefix); ``name`` is what the error message calls it."""
    if not uri.startswith("s3://") or "/" not in uri[len("s3://") :]:
        raise ValueError(f"{name}={uri!r}: expected s3://bucket/prefix")
    bucket, prefix = uri[len("s3://") :].split("/", 1)
    return bucket, prefix.strip("/")


def _remote() -> tuple[str, str] | None:
    uri = os.environ.get(URI_ENV, "").strip()
    return split_uri(uri, URI_ENV) if uri else None


def s3_client() -> Any:
    from botocore.config import Config

    return s3.client(Config(retries={"mode": "standard", "max_attempts": 8}))


def _say(text: str) -> None:
    print(f"lamflow: {text}", file=sys.stderr, flush=True)


def restore(cwd: Path) -> Path | None:
    """Download the newest remote checkpoint (and its companions) into ``cwd`` when ``cwd`` has none;
    returns the restored checkpoint, or None."""
    remote = _remote()
    if remote is None or latest_checkpoint(cwd) is not None:
        return None
    bucket, prefix = remote
    client = s3_client()
    listing = client.list_objects_v2(Bucket=bucket, Prefix=f"{prefix}/")
    names = {item["Key"].rsplit("/", 1)[-1] for item in listing.get("Contents", [])}
    checkpoints = sorted(
        (int(m.group(1)), name) for name in names if (m := CHECKPOINT_PATTERN.fullmatch(name))
    )
    if not checkpoints:
        return None
    name = checkpoints[-1][1]
    for item in (name, *COMPANIONS):
        if item in names:
            client.download_file(bucket, f"{prefix}/{item}", str(cwd / item))
    restored = latest_checkpoint(cwd)
    if restored is not None:
        _say(f"restored {restored.name} from s3://{bucket}/{prefix} (a retried pod continues from it)")
    return restored


class Uploader:
    """While the block runs, copy each new complete checkpoint of ``cwd`` to the remote prefix (the
    previous one is then deleted there); once more at the end."""

    def __init__(self, cwd: Path) -> None:
        self.cwd = cwd
        self.remote = _remote()
        self.interval = float(os.environ.get(INTERVAL_ENV) or INTERVAL_S)
        self.uploaded: str | None = None
        self.stopping = threading.Event()
        self.thread: threading.Thread | None = None

    def __enter__(self) -> Uploader:
        if self.remote is not None:
            self.client = s3_client()
            self.thread = threading.Thread(target=self._loop, name="checkpoint-upload", daemon=True)
            self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        if self.thread is not None:
            self.stopping.set()
            self.thread.join()
            self.sync()

    def _loop(self) -> None:
        while not self.stopping.wait(self.interval):
            try:
                self.sync()
            except Exception as error:  # a failed upload must not stop training; the next round retries
                _say(f"checkpoint upload failed, will retry: {error}")

    def sync(self) -> None:
        newest = latest_checkpoint(self.cwd)
        if self.remote is None or newest is None or newest.name == self.uploaded:
            return
        bucket, prefix = self.remote
        for item in COMPANIONS:
            if (self.cwd / item).is_file():
                self.client.upload_file(str(self.cwd / item), bucket, f"{prefix}/{item}")
        self.client.upload_file(str(newest), bucket, f"{prefix}/{newest.name}")
        if self.uploaded is not None:
            self.client.delete_object(Bucket=bucket, Key=f"{prefix}/{self.uploaded}")
        self.uploaded = newest.name
