"""A training step as a PyTorchJob (ops/job.py), S3 through moto and the fake dp under the real torchrun:
the stage step puts the inputs into the job's prefix, two "pods" (processes with the variables the
training operator sets) fetch them and train as one job at a c10d rendezvous, the pod that held rank 0
publishes the outputs, and the collect step hands them on as the training op's outputs."""

from __future__ import annotations

import os
import socket
import subprocess
import sys

import pytest
from dflow.python import FatalError

from lamflow.ops import job
from lamflow.ops.training import checkpoint_sync
from tests.ops.conftest import STAGED
from tests.ops.training.test_checkpoint_sync import keys, params


def _port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture
def job_uri(s3, monkeypatch):
    uri = f"s3://{s3.test_bucket}/lab/jobs/wf-uid/pretrain"
    monkeypatch.setenv(job.JOB_URI_ENV, uri)
    return uri


def test_two_pods_train_as_one_job_and_the_collect_step_hands_on_rank_0s_outputs(
    s3, job_uri, run_op, fake_dp, tmp_path, monkeypatch
):
    staged = run_op(job.StagePretrainOP, params(steps=4, save=2), datasets=STAGED)
    assert staged.job == job_uri
    prefix = "lab/jobs/wf-uid/pretrain"
    stored = keys(s3)
    assert f"{prefix}/inputs.json" in stored and f"{prefix}/inputs/datasets/gete.tar" in stored
    operator = {  # what the training operator sets in each pod (elasticPolicy, c10d rendezvous)
        "PET_NNODES": "2:2", "PET_NPROC_PER_NODE": "1", "PET_RDZV_ENDPOINT": f"127.0.0.1:{_port()}",
        "PET_RDZV_ID": "pretrain", checkpoint_sync.URI_ENV: f"s3://{s3.test_bucket}/lab/checkpoints/pretrain",
    }  # fmt: skip
    pods = _start_pods(job_uri, operator, tmp_path / "attempt-1")
    outputs = [pod.communicate(timeout=120)[0] for pod in pods]
    assert [pod.returncode for pod in pods] == [0, 0], outputs
    assert sum("outputs published" in out for out in outputs) == 1, outputs
    assert sum("without rank 0" in out for out in outputs) == 1, outputs
    trains = [r for r in fake_dp.records() if "train" in r["argv"]]
    assert sorted(r["env"]["RANK"] for r in trains) == ["0", "1"] and {
        r["env"]["WORLD_SIZE"] for r in trains
    } == {"2"}
    assert f"{prefix}/done" in keys(s3)
    assert f"{s3.test_bucket}" and "lab/checkpoints/pretrain/model.ckpt-4.pt" in keys(
        s3
    )  # synced as it trained
    out = run_op(job.CollectPretrainOP, job.CollectInput(job=job_uri))
    assert out.lcurve_last["step"] == 4 and out.checkpoint.is_file() and out.lcurve.is_file()
    assert out.log.read_text().count("Rank: 0/2") == 1


def _start_pods(job_uri: str, operator: dict[str, str], root, extra: dict[str, str] | None = None) -> list:
    pods = []
    for pod in range(2):
        env = {**os.environ, **operator, **(extra or {}), "LAMFLOW_JOB_ROOT": str(root / f"pod-{pod}")}
        command = [sys.executable, "-m", "lamflow.ops.job", "pretrain", job_uri]
        pods.append(
            subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        )
    return pods


def test_a_restarted_job_continues_from_the_newest_checkpoint_in_the_store(
    s3, job_uri, run_op, fake_dp, tmp_path, monkeypatch
):
    """An earlier attempt of the job was lost after its first checkpoint (here: the training killed in one
    process, its checkpoint in the store, its failure marked); the restarted pods (fresh file systems)
    restore the newest checkpoint, both restart from it and finish, and the earlier attempt's failure
    marker does not end the waiting of the pod without rank 0."""
    from lamflow.ops.pretrain import PretrainOP

    run_op(job.StagePretrainOP, params(steps=6, save=2), datasets=STAGED)
    carry = f"s3://{s3.test_bucket}/lab/checkpoints/pretrain"
    monkeypatch.setenv(checkpoint_sync.URI_ENV, carry)
    monkeypatch.setenv("LAMFLOW_FAKE_DP_KILL_AFTER_SAVE", "1")
    with pytest.raises(Exception, match="exited with -9|killed|SIGKILL"):
        run_op(PretrainOP, params(steps=6, save=2), datasets=STAGED)  # the lost attempt
    monkeypatch.delenv("LAMFLOW_FAKE_DP_KILL_AFTER_SAVE")
    job._mark(job_uri, job.FAILED, "RuntimeError: the lost attempt")
    assert "lab/checkpoints/pretrain/model.ckpt-2.pt" in keys(s3)
    operator = {
        "PET_NNODES": "2:2", "PET_NPROC_PER_NODE": "1", "PET_RDZV_ID": "pretrain",
        "PET_RDZV_ENDPOINT": f"127.0.0.1:{_port()}", checkpoint_sync.URI_ENV: carry,
    }  # fmt: skip
    pods = _start_pods(job_uri, operator, tmp_path / "attempt-2")
    outputs = [pod.communicate(timeout=120)[0] for pod in pods]
    assert [pod.returncode for pod in pods] == [0, 0], outputs
    restarts = [r["argv"] for r in fake_dp.records() if "train" in r["argv"] and "--restart" in r["argv"]]
    assert len(restarts) == 2 and all(argv[-2:] == ["--restart", "model.ckpt-2.pt"] for argv in restarts)
    out = run_op(job.CollectPretrainOP, job.CollectInput(job=job_uri))
    steps = [int(line.split()[0]) for line in out.lcurve.read_text().splitlines() if line[:1] != "#"]
    assert steps[0] == 1 and steps[-1] == 6, "the learning curve continues the lost attempt's"


def test_a_job_that_failed_or_never_published_fails_the_collect_step(s3, job_uri, run_op):
    with pytest.raises(FatalError, match="published no outputs"):
        run_op(job.CollectPretrainOP, job.CollectInput(job=job_uri))
    job._mark(job_uri, job.FAILED, "FatalError: dp exited with 1")
    assert job._wait(job_uri, limit_s=1) == 1  # a pod without rank 0 fails with it


def test_the_stage_step_needs_its_uri(monkeypatch, run_op):
    monkeypatch.delenv(job.JOB_URI_ENV, raising=False)
    with pytest.raises(FatalError, match="LAMFLOW_JOB_URI is not set"):
        run_op(job.StagePretrainOP, params(), datasets=STAGED)


def test_the_pod_entry_point_names_its_arguments(capsys):
    assert job.main(["nonsense"]) == 2
    assert (
        "usage: python -m lamflow.ops.job {pretrain,finetune,scratch,student} s3://"
        in capsys.readouterr().err
    )


def test_archives_unpack_on_pythons_with_and_without_tarfile_filters_and_nothing_escapes(
    tmp_path, monkeypatch
):
    import io
    import tarfile

    folder = tmp_path / "data" / "sys"
    folder.mkdir(parents=True)
    (folder / "type.raw").write_text("0\n")
    packed = job._pack(tmp_path / "data", tmp_path / "data.tar")
    assert (job._unpack(packed, tmp_path / "a") / "sys" / "type.raw").read_text() == "0\n"
    monkeypatch.delattr(tarfile, "data_filter", raising=False)  # Python < 3.11.4
    assert (job._unpack(packed, tmp_path / "b") / "sys" / "type.raw").read_text() == "0\n"
    evil = tmp_path / "evil.tar"
    with tarfile.open(evil, mode="w") as archive:
        info = tarfile.TarInfo("../outside.txt")
        info.size = 2
        archive.addfile(info, io.BytesIO(b"no"))
    with pytest.raises(FatalError, match="not a plain file or folder inside the staged archive"):
        job._unpack(evil, tmp_path / "c")
    assert not (tmp_path / "outside.txt").exists()


def test_staging_streams_an_artifact_through_files_not_memory(s3, job_uri, tmp_path):
    """A 64 MiB dataset goes to the store and back while Python holds well under its size (the archives
    were built in memory before: a dataset of GBs would have been held twice)."""
    import tracemalloc

    from lamflow.ops.data.datasets import StagedDatasets

    data = tmp_path / "big" / "sys" / "set.000"
    data.mkdir(parents=True)
    (data / "coord.npy").write_bytes(os.urandom(64 << 20))
    tracemalloc.start()
    try:
        job.put_values({"datasets": {"big": tmp_path / "big"}}, StagedDatasets, job_uri, "inputs")
        put_peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.reset_peak()
        got = job.get_values(job_uri, "inputs", tmp_path / "got")
        get_peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    back = got["datasets"]["big"] / "sys" / "set.000" / "coord.npy"
    assert back.read_bytes() == (data / "coord.npy").read_bytes()
    assert max(put_peak, get_peak) < 48 << 20, (put_peak, get_peak)
