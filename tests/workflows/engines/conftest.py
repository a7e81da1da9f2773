"""Fixtures of the engine tests: the Argo Server's HTTP double, and a user's settings that reach it."""

from __future__ import annotations

import os

import pytest

from tests.argo_double import ArgoDouble

TOKEN = "argo-double-token-5b1e"


@pytest.fixture
def argo():
    double = ArgoDouble(token=TOKEN).start()
    yield double
    double.stop()


@pytest.fixture
def argo_env(s3, argo, tmp_path):
    """Settings of a user who submits to the double with an S3 store (no lamflow credential variables)."""
    return {
        **os.environ,
        "LAMFLOW_STORE": f"s3://{s3.test_bucket}/lab",
        "LAMFLOW_IMAGE": "registry.example.org/lamflow-ops:test-cuda",
        "LAMFLOW_ARGO_SERVER": argo.url,
        "LAMFLOW_ARGO_TOKEN": TOKEN,
        "LAMFLOW_ARGO_NAMESPACE": "lab",
        "LAMFLOW_ARGO_POLL_S": "0.02",
        "LAMFLOW_RUN_ROOT": str(tmp_path / "runs"),
    }
