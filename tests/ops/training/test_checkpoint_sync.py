"""Checkpoints carried between pods (S3 through moto): a training step whose pod is lost after a checkpoint
continues from it in the retried pod — a fresh directory — with `dp --pt train --restart`."""

from __future__ import annotations

import zipfile

import pytest

from lamflow.ops.finetune import FinetuneOP, FinetuneParams
from lamflow.ops.pretrain import PretrainOP, PretrainParams
from lamflow.ops.training import checkpoint_sync
from lamflow.ops.training.common import HeadData
from tests.ops.conftest import STAGED, formats


@pytest.fixture
def remote(s3, monkeypatch):
    monkeypatch.setenv(checkpoint_sync.URI_ENV, f"s3://{s3.test_bucket}/lab/checkpoints/wf-uid/pretrain")
    monkeypatch.setenv(checkpoint_sync.INTERVAL_ENV, "0.05")
    return s3


def keys(s3) -> list[str]:
    listing = s3.client().list_objects_v2(Bucket=s3.test_bucket)
    return sorted(item["Key"] for item in listing.get("Contents", []))


def params(steps: int = 6, save: int = 2) -> PretrainParams:
    from lamflow.workflows.compile.deepmd_input import single_task_input
    from lamflow.workflows.spec.model import ModelSpec
    from lamflow.workflows.spec.training import TrainingSpec

    inp = single_task_input(
        ModelSpec(preset="dpa2-tiny"),
        ["Ge", "Te"],
        TrainingSpec(steps=steps, save_freq=save),
        with_validation=False,
    )
    return PretrainParams(
        deepmd_input=inp,
        head_datasets={"gete": HeadData(train=["gete"], validation=[])},
        dataset_formats=formats("gete"),
    )


def test_a_retried_pod_continues_from_the_lost_pods_checkpoint(remote, run_op, fake_dp, monkeypatch):
    monkeypatch.setenv("LAMFLOW_FAKE_DP_KILL_AFTER_SAVE", "1")
    with pytest.raises(Exception, match="exited with -9|killed|SIGKILL"):
        run_op(PretrainOP, params(), datasets=STAGED)  # the pod is lost after its first checkpoint
    prefix = "lab/checkpoints/wf-uid/pretrain"
    assert keys(remote) == [f"{prefix}/lcurve.out", f"{prefix}/model.ckpt-2.pt", f"{prefix}/out.json"]
    monkeypatch.delenv("LAMFLOW_FAKE_DP_KILL_AFTER_SAVE")
    out = run_op(PretrainOP, params(), datasets=STAGED)  # the retry: a fresh pod, an empty directory
    trains = [r["argv"] for r in fake_dp.records() if "train" in r["argv"]]
    assert trains[-1][-2:] == ["--restart", "model.ckpt-2.pt"], (
        "the retry restarted from the carried checkpoint"
    )
    assert out.lcurve_last["step"] == 6
    steps = [int(line.split()[0]) for line in out.lcurve.read_text().splitlines() if line[:1] != "#"]
    assert steps[0] == 1 and steps[-1] == 6, "lcurve.out continues the lost pod's curve"
    kept = [f"{prefix}/lcurve.out", f"{prefix}/model.ckpt-6.pt", f"{prefix}/out.json"]
    assert keys(remote) == kept, "only the newest checkpoint is kept"


def test_a_fine_tune_restarts_from_its_completed_input(remote, run_op, fake_dp, monkeypatch):
    base = run_op(PretrainOP, params(steps=2), datasets=STAGED).checkpoint.resolve()
    monkeypatch.setenv(
        checkpoint_sync.URI_ENV, f"s3://{remote.test_bucket}/lab/checkpoints/wf-uid/finetune-gete"
    )
    ft = FinetuneParams(
        deepmd_input=params().deepmd_input,
        head_datasets={"gete": HeadData(train=["gete"], validation=[])},
        dataset_formats=formats("gete"),
    )
    monkeypatch.setenv("LAMFLOW_FAKE_DP_KILL_AFTER_SAVE", "1")
    with pytest.raises(Exception, match="exited with -9|killed|SIGKILL"):
        run_op(FinetuneOP, ft, datasets=STAGED, base_checkpoint=base)
    assert "lab/checkpoints/wf-uid/finetune-gete/out.json" in keys(remote)
    monkeypatch.delenv("LAMFLOW_FAKE_DP_KILL_AFTER_SAVE")
    run_op(FinetuneOP, ft, datasets=STAGED, base_checkpoint=base)
    trains = [r["argv"] for r in fake_dp.records() if "train" in r["argv"]]
    assert trains[-1][-3:] == ["out.json", "--restart", "model.ckpt-2.pt"]


def test_without_the_variable_nothing_is_carried_and_a_bad_uri_is_named(tmp_path, monkeypatch):
    monkeypatch.delenv(checkpoint_sync.URI_ENV, raising=False)
    with zipfile.ZipFile(tmp_path / "model.ckpt-2.pt", "w") as z:
        z.writestr("x", "y")
    assert checkpoint_sync.restore(tmp_path) is None
    with checkpoint_sync.Uploader(tmp_path) as uploader:
        assert uploader.thread is None
    monkeypatch.setenv(checkpoint_sync.URI_ENV, "/not/s3")
    with pytest.raises(ValueError, match="LAMFLOW_CHECKPOINT_URI='/not/s3': expected s3://bucket/prefix"):
        checkpoint_sync.restore(tmp_path / "empty")


def test_a_pod_that_has_its_own_checkpoint_downloads_nothing(remote, tmp_path):
    with zipfile.ZipFile(tmp_path / "model.ckpt-4.pt", "w") as z:
        z.writestr("x", "y")
    with checkpoint_sync.Uploader(tmp_path):
        pass
    fresh = tmp_path / "fresh"
    fresh.mkdir()
    (fresh / "model.ckpt-8.pt").write_bytes(b"")  # torn: not a checkpoint of its own
    assert checkpoint_sync.restore(fresh) == fresh / "model.ckpt-4.pt"
    assert checkpoint_sync.restore(tmp_path) is None  # has one: nothing downloaded
