"""Training on several nodes (ops/training/distributed.py), with stand-in commands: the local engine's
nodes run side by side, each with its own GPUs and log, a failing node fails the step naming its log;
in a pod of a job, the pod whose processes did not include rank 0 says so instead of finishing the op."""

from __future__ import annotations

import sys

import pytest
from dflow.python import FatalError

from lamflow.ops import dp
from lamflow.ops.training import distributed


def _nodes(monkeypatch, environ: dict[str, str]) -> None:
    for name in (
        "PET_NNODES",
        "PET_RDZV_ENDPOINT",
        "PET_MASTER_ADDR",
        "PET_MASTER_PORT",
        dp.NNODES_ENV,
        dp.RDZV_ENV,
        dp.NPROC_ENV,
    ):
        monkeypatch.delenv(name, raising=False)
    for name, value in environ.items():
        monkeypatch.setenv(name, value)


def _command(code: str):
    def command(topo: dp.Topology) -> list[str]:
        # what each node runs: here a stand-in that prints the endpoint and the GPUs it was given
        return [sys.executable, "-c", code, topo.rdzv_endpoint or "-"]

    return command


PRINT = "import os,sys; print('endpoint', sys.argv[1], 'gpus', os.environ.get('CUDA_VISIBLE_DEVICES'))"


def test_local_nodes_run_side_by_side_with_a_share_of_the_gpus_each(tmp_path, monkeypatch):
    _nodes(monkeypatch, {dp.NNODES_ENV: "2", dp.NPROC_ENV: "2", "CUDA_VISIBLE_DEVICES": "4,5,6,7"})
    distributed.run_training(_command(PRINT), tmp_path, "train.log")
    first, second = (tmp_path / "train.log").read_text(), (tmp_path / "train.node-1.log").read_text()
    assert "endpoint 127.0.0.1:" in first and first.split("endpoint ")[1].split()[0] in second
    assert "gpus 4,5" in first and "gpus 6,7" in second
    assert dp.os.environ["CUDA_VISIBLE_DEVICES"] == "4,5,6,7", "the step's own GPUs are put back"


def test_a_failing_node_fails_the_step_naming_its_log(tmp_path, monkeypatch):
    _nodes(monkeypatch, {dp.NNODES_ENV: "3"})
    code = "import sys,os; sys.exit(0 if 'train.node' not in os.readlink(f'/proc/{os.getpid()}/fd/1') else 4)"
    with pytest.raises(FatalError, match=r"training node 1 of 3 exited with 4 \(.*train.node-1.log\)"):
        distributed.run_training(_command(code), tmp_path, "train.log")


def test_in_a_pod_without_rank_0_the_op_stops_there(tmp_path, monkeypatch):
    _nodes(monkeypatch, {"PET_NNODES": "2:2", "PET_RDZV_ENDPOINT": "job-worker-0:29400"})
    with pytest.raises(distributed.FollowerDone, match="without rank 0"):
        distributed.run_training(_command("print('Rank: 1/2')"), tmp_path, "train.log")
    distributed.run_training(_command("print('Rank: 0/2')"), tmp_path / "chief", "train.log")
    monkeypatch.delenv("PET_RDZV_ENDPOINT")  # a pod never starts the other nodes itself
    with pytest.raises(FatalError, match="PET_NNODES is set but neither PET_RDZV_ENDPOINT nor"):
        distributed.run_training(_command(PRINT), tmp_path / "lost", "train.log")


def test_gpus_split_only_when_there_is_one_set_per_node():
    topo = dp.Topology(nnodes=2, nproc_per_node=1)
    assert distributed.node_gpus("0,1", topo) == ["0", "1"]
    assert distributed.node_gpus("", topo) is None and distributed.node_gpus("0,1,2", topo) is None
