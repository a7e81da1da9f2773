"""``dp train`` on more than one node: one torchrun per node, meeting at a c10d rendezvous.

The command line of each node is :func:`lamflow.ops.dp.train_command` under :func:`lamflow.ops.dp.launcher`
— the same builder in a pod of a Kubeflow PyTorchJob (where the training operator's ``PET_*`` variables
give the nodes, the processes per node and the rendezvous endpoint) and on the local engine, where
``LAMFLOW_NNODES`` (``resources.<class>.nodes``) makes :func:`run_training` start that many torchrun
"nodes" on this machine: c10d rendezvous on 127.0.0.1, gloo on CPU, all in the step's working directory
(DeePMD-kit's rank 0 writes ``lcurve.out`` and the checkpoints there; every rank writes the same
``out.json``, as it does on one node with several GPUs). Node 0's output is the step's training log; node
*i*'s goes to ``train.node-<i>.log`` beside it. In a pod of a job, the pod whose processes did not include
rank 0 (DeePMD-kit's ``Rank: 0/N`` line is not in its log) raises :class:`FollowerDone` instead of
finishing the op: rank 0's pod holds the outputs (ops/job.py).
"""

from __future__ import annotations

import os
import re
import socket
import subprocess
import sys
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

from dflow.python import FatalError

from lamflow.ops.dp import OPERATOR_NNODES, Topology, process_topology
from lamflow.ops.runtime.common import run_dp_step

NODE_LOG = "train.node-{}.log"
CHIEF_LINE = re.compile(r"Rank: 0/\d+")  # DeePMD-kit logs "Rank: r/N" in each process of a distributed run


class FollowerDone(Exception):
    """This pod of a job trained without rank 0: rank 0's pod holds the outputs and finishes the step."""


STOP_TIMEOUT_S = 30.0


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def local_nodes(topo: Topology, rdzv_id: str) -> Topology:
    """The topology of this machine's nodes of one step: a fresh rendezvous on 127.0.0.1."""
    return replace(topo, rdzv_endpoint=f"127.0.0.1:{_free_port()}", rdzv_id=rdzv_id)


def _read(path: Path) -> str:
    try:
        return path.read_text(errors="replace")
    except OSError:
        return ""


def node_gpus(visible: str | None, topo: Topology) -> list[str] | None:
    """Each local node's ``CUDA_VISIBLE_DEVICES``: the step's GPUs split in order, ``nproc_per_node`` each
    (None where the step holds no GPUs, or not one set per node)."""
    names = [name for name in (visible or "").split(",") if name.strip()]
    if not names or len(names) != topo.world_size:
        return None
    per = topo.nproc_per_node
    return [",".join(names[i * per : (i + 1) * per]) for i in range(topo.nnodes)]


def run_training(command: Callable[[Topology], list[str]], cwd: Path, log_file: str) -> None:
    """Run ``command(topology)`` in ``cwd``: once where this process is one node of a job (a pod, or one
    node), ``nnodes`` times side by side where ``LAMFLOW_NNODES`` asks for nodes on this machine."""
    topo = process_topology()
    in_a_pod = bool(os.environ.get(OPERATOR_NNODES))  # a job's pod is one node: never start the others here
    if in_a_pod and topo.nnodes > 1 and topo.rdzv_endpoint is None:
        raise FatalError(f"{OPERATOR_NNODES} is set but neither PET_RDZV_ENDPOINT nor PET_MASTER_ADDR/PORT")
    if topo.nnodes == 1 or topo.rdzv_endpoint is not None:
        run_dp_step(command(topo), cwd, log_file)
        if in_a_pod and not CHIEF_LINE.search(_read(cwd / log_file)):
            raise FollowerDone(f"trained as one of {topo.nnodes} nodes, without rank 0")
        return
    here = local_nodes(topo, rdzv_id=f"lamflow-{os.getpid()}")
    argv = command(here)
    gpus = node_gpus(os.environ.get("CUDA_VISIBLE_DEVICES"), topo)
    others: list[tuple[int, subprocess.Popen[bytes], Path]] = []
    for node in range(1, topo.nnodes):
        log = cwd / NODE_LOG.format(node)
        env = dict(os.environ) if gpus is None else {**os.environ, "CUDA_VISIBLE_DEVICES": gpus[node]}
        with log.open("ab") as out:
            out.write(f"$ {' '.join(argv)}\n".encode())
            out.flush()
            proc = subprocess.Popen(argv, cwd=cwd, env=env, stdout=out, stderr=subprocess.STDOUT)
        others.append((node, proc, log))
    saved = os.environ.get("CUDA_VISIBLE_DEVICES")
    try:
        if gpus is not None:
            os.environ["CUDA_VISIBLE_DEVICES"] = gpus[0]
        run_dp_step(argv, cwd, log_file)
    except BaseException:
        for _, proc, _ in others:
            proc.terminate()
        raise
    finally:
        if gpus is not None and saved is not None:
            os.environ["CUDA_VISIBLE_DEVICES"] = saved
        for _, proc, _ in others:
            try:
                proc.wait(timeout=STOP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
    failed = [(node, proc.returncode, log) for node, proc, log in others if proc.returncode != 0]
    if failed:
        node, status, log = failed[0]
        tail = log.read_text(errors="replace").strip().splitlines()[-1:] or ["no output"]
        raise FatalError(f"training node {node} of {topo.nnodes} exited with {status} ({log}): {tail[0]}")
    print(f"lamflow: trained on {topo.nnodes} nodes x {topo.nproc_per_node} processes", file=sys.stderr)
