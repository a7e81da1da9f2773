"""S3 clients: one parse of botocore's models per process, the environment read afresh for each client."""

from __future__ import annotations

from lamflow.ops.runtime import s3


def test_each_client_reads_the_environment_of_its_moment_and_shares_the_models(monkeypatch):
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "first-key")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "first-secret")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "eu-west-1")
    monkeypatch.setenv("AWS_ENDPOINT_URL", "http://127.0.0.1:9001")
    monkeypatch.delenv("AWS_PROFILE", raising=False)
    first = s3.client()
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "second-key")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "ap-south-1")
    monkeypatch.setenv("AWS_ENDPOINT_URL", "http://127.0.0.1:9002")
    second = s3.client()
    assert first._request_signer._credentials.access_key == "first-key"
    assert second._request_signer._credentials.access_key == "second-key"
    assert (first.meta.region_name, second.meta.region_name) == ("eu-west-1", "ap-south-1")
    assert (first.meta.endpoint_url, second.meta.endpoint_url) == (
        "http://127.0.0.1:9001",
        "http://127.0.0.1:9002",
    )
    # the parsed service model is the same object: parsed once
    assert first.meta.service_model._service_description is second.meta.service_model._service_description
