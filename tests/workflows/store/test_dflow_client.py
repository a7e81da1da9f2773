"""lamflow's S3 store plugged into dflow as its storage client: dflow's own upload_artifact /
download_artifact move files through it (boto3, the standard AWS chain) against a real S3 endpoint."""

from __future__ import annotations

import pytest

from lamflow.workflows.dflow_config import dflow_config
from lamflow.workflows.errors import UsageError
from lamflow.workflows.settings import Settings
from lamflow.workflows.store.dflow_client import StoreStorageClient, use_store_with_dflow


def test_dflow_upload_and_download_go_through_the_store(s3, tmp_path, monkeypatch):
    source = tmp_path / "src" / "model"
    source.mkdir(parents=True)
    (source / "frozen.pth").write_bytes(b"model bytes")
    (source / "sub").mkdir()
    (source / "sub" / "lcurve.out").write_text("# step\n1 0.5\n")
    monkeypatch.chdir(tmp_path)
    settings = Settings(store=f"s3://{s3.test_bucket}/lab")
    with dflow_config({"mode": "default"}, {"access_key": "", "secret_key": ""}):
        from dflow import download_artifact, s3_config, upload_artifact

        with use_store_with_dflow(settings) as client:
            assert isinstance(s3_config["storage_client"], StoreStorageClient)
            artifact = upload_artifact([source])
            key = artifact.key
            keys = client.list(key, recursive=True)
            assert keys and all(k.startswith(key) for k in keys)
            fetched = download_artifact(artifact, path=str(tmp_path / "back"))
            copy = key.rstrip("/") + "-copy/frozen"
            client.copy(keys[0], copy)
            assert client.get_md5(copy) == client.get_md5(keys[0])
        assert s3_config["storage_client"] is None, "dflow's configuration is put back"
    found = {p.name: p for p in (tmp_path / "back").rglob("*") if p.is_file() and ".dflow" not in p.parts}
    assert set(found) == {"frozen.pth", "lcurve.out"}, fetched
    assert found["frozen.pth"].read_bytes() == b"model bytes"
    assert found["lcurve.out"].read_text() == "# step\n1 0.5\n"
    listing = s3.client().list_objects_v2(Bucket=s3.test_bucket)["Contents"]
    assert any(item["Key"].startswith(key) for item in listing), "the objects are in the store's bucket"


def test_a_local_store_is_refused_naming_the_setting(tmp_path):
    with pytest.raises(
        UsageError, match="LAMFLOW_STORE=.*: dflow's storage needs an s3://bucket/prefix store"
    ):
        with use_store_with_dflow(Settings(store=str(tmp_path / "store"))):
            pass
