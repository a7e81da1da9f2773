"""A training step as a Kubeflow PyTorchJob: how its inputs reach the job's pods and its outputs come back.

On Argo a training step with ``resources.<class>.nodes`` > 1 becomes three tasks
(workflows/argo/kubeflow.py):

1. ``<key>-stage`` runs :class:`StageOP` of the training op (``StagePretrainOP`` ...): the step's inputs,
   as Argo hands them to any step, go to the job's prefix in the store (``LAMFLOW_JOB_URI``, one per
   workflow and step): one ``.tar`` per artifact (per key of a dict artifact), written to and read from a
   temporary file so that a dataset of GBs never sits in memory, and ``inputs.json``.
2. ``<key>-job`` creates the PyTorchJob. Each pod runs ``python -m lamflow.ops.job <op> <job uri>``: the
   inputs fetched, the training op run as in a step (its ``dp train`` under torchrun, the operator's
   rendezvous); the pod whose processes included rank 0 (DeePMD-kit's ``Rank: 0/N`` line) finishes the op
   (freeze) and publishes its outputs and ``done``; the other pods wait for ``done`` and exit 0, so that
   the job succeeds only once the outputs are there. Checkpoints go to the store while it trains, and a
   restarted pod continues from the newest (ops/training/checkpoint_sync.py).
3. ``<key>`` runs :class:`CollectOP` of the training op: the published outputs, as the training op's
   outputs — every later step reads them as it reads any training step's.

S3 is reached with boto3 and the standard AWS chain (the pods' environment, from the cluster's Secret).
"""

from __future__ import annotations

import json
import os
import sys
import tarfile
import tempfile
import time
from pathlib import Path
from typing import Any

from dflow.python import OPIO, FatalError

from lamflow.ops.finetune import FinetuneOP
from lamflow.ops.pretrain import PretrainOP
from lamflow.ops.runtime.common import work_dir
from lamflow.ops.runtime.contract import LamflowOP, OpModel, artifact_kind
from lamflow.ops.scratch import ScratchOP
from lamflow.ops.student import StudentOP
from lamflow.ops.training.checkpoint_sync import s3_client, split_uri
from lamflow.ops.training.distributed import FollowerDone

JOB_URI_ENV = "LAMFLOW_JOB_URI"
DONE, FAILED = "done", "failed"
WAIT_S = 5.0  # longest pause between two looks for rank 0's marker (the first look comes after 0.25 s)
WAIT_LIMIT_S = 6 * 3600.0  # a pod that trained waits this long for rank 0's pod to publish
TRAINING_OPS: dict[str, type[LamflowOP[Any, Any]]] = {
    op.name: op for op in (PretrainOP, FinetuneOP, ScratchOP, StudentOP)
}


class JobOutput(OpModel):
    job: str


class CollectInput(OpModel):
    job: str


def _client_and_prefix(uri: str) -> tuple[Any, str, str]:
    bucket, prefix = split_uri(uri, JOB_URI_ENV)
    return s3_client(), bucket, prefix


def _pack(path: Path, archive_file: Path) -> Path:
    """``path`` (a file or folder) as a tar file written to ``archive_file`` as it is read: no copy held in
    memory, and no compression (training data and checkpoints are float arrays gzip barely shrinks, and
    the CPU time would come off the pod's)."""
    with tarfile.open(archive_file, mode="w", dereference=True) as archive:  # a link: its file
        archive.add(str(path), arcname=path.name)
    return archive_file


def _unpack(archive_file: Path, into: Path) -> Path:
    """What :func:`_pack` wrote, extracted under ``into`` (refused when a member is not a plain file or
    folder inside one top folder); returns that folder (or file)."""
    into.mkdir(parents=True, exist_ok=True)
    root = into.resolve()
    with tarfile.open(archive_file, mode="r") as archive:
        members = archive.getmembers()
        for member in members:  # what _pack writes: plain files and folders inside one top folder
            inside = (root / member.name).resolve().is_relative_to(root)
            if not inside or not (member.isfile() or member.isdir()):
                raise FatalError(f"{member.name}: not a plain file or folder inside the staged archive")
        (name,) = {member.name.split("/", 1)[0] for member in members}
        if hasattr(tarfile, "data_filter"):  # Python >= 3.11.4 checks again; older ones take the list
            archive.extractall(into, filter="data")
        else:
            archive.extractall(into, members=members)
    return into / name


def _transfer() -> Any:
    """boto3's managed transfers, at most 4 parts of 8 MiB in flight and, downloading, at most 16 chunks
    of 256 KiB waiting to be written (boto3's default queue holds 100: 25 MiB more when the disk is slower
    than the network): what a transfer holds in memory, whatever the size of the dataset."""
    from boto3.s3.transfer import TransferConfig

    return TransferConfig(multipart_chunksize=8 << 20, max_concurrency=4, max_io_queue=16)


def _upload(client: Any, bucket: str, key: str, path: Path) -> None:
    """One artifact into the store through a temporary tar file (multipart)."""
    with tempfile.TemporaryDirectory(prefix="lamflow-job-") as tmp:
        client.upload_file(str(_pack(path, Path(tmp) / "a.tar")), bucket, key, Config=_transfer())


def _download(client: Any, bucket: str, key: str, into: Path) -> Path:
    with tempfile.TemporaryDirectory(prefix="lamflow-job-") as tmp:
        archive_file = Path(tmp) / "a.tar"
        client.download_file(bucket, key, str(archive_file), Config=_transfer())
        return _unpack(archive_file, into)


def put_values(values: dict[str, Any], model: type[OpModel], uri: str, part: str) -> None:
    """``values`` (an OPIO's: artifacts as paths) under ``<uri>/<part>/``: a ``.tar`` per artifact and
    ``<part>.json`` with the parameters and which artifacts there are."""
    client, bucket, prefix = _client_and_prefix(uri)
    record: dict[str, Any] = {"parameters": {}, "artifacts": {}}
    kinds = {name: artifact_kind(field.annotation) for name, field in model.model_fields.items()}
    for name, value in values.items():
        if name not in kinds or value is None:
            continue
        if kinds[name] == "path":
            _upload(client, bucket, f"{prefix}/{part}/{name}.tar", Path(value))
            record["artifacts"][name] = None
        elif kinds[name] == "dict":
            for key, path in value.items():
                _upload(client, bucket, f"{prefix}/{part}/{name}/{key}.tar", Path(path))
            record["artifacts"][name] = sorted(value)
        else:
            record["parameters"][name] = value
    client.put_object(Bucket=bucket, Key=f"{prefix}/{part}.json", Body=json.dumps(record).encode())


def get_values(uri: str, part: str, into: Path) -> dict[str, Any]:
    """What :func:`put_values` stored, artifacts unpacked under ``into``."""
    client, bucket, prefix = _client_and_prefix(uri)
    record = json.loads(client.get_object(Bucket=bucket, Key=f"{prefix}/{part}.json")["Body"].read())
    values: dict[str, Any] = dict(record["parameters"])
    for name, keys in record["artifacts"].items():
        if keys is None:
            values[name] = _download(client, bucket, f"{prefix}/{part}/{name}.tar", into / name)
        else:
            values[name] = {
                key: _download(client, bucket, f"{prefix}/{part}/{name}/{key}.tar", into / name / key)
                for key in keys
            }
    return values


def _marker(uri: str, client: Any = None) -> str | None:
    """DONE or FAILED where the pod of rank 0 wrote one, else None (``client``: an S3 client to use
    again, e.g. across the looks of :func:`_wait`)."""
    bucket, prefix = split_uri(uri, JOB_URI_ENV)
    client = client or s3_client()
    names = {
        item["Key"].rsplit("/", 1)[-1]
        for item in client.list_objects_v2(Bucket=bucket, Prefix=f"{prefix}/").get("Contents", [])
    }
    return DONE if DONE in names else FAILED if FAILED in names else None


def _clear(uri: str, name: str) -> None:
    client, bucket, prefix = _client_and_prefix(uri)
    client.delete_object(Bucket=bucket, Key=f"{prefix}/{name}")


def _mark(uri: str, name: str, text: str) -> None:
    client, bucket, prefix = _client_and_prefix(uri)
    client.put_object(Bucket=bucket, Key=f"{prefix}/{name}", Body=text.encode())


def stage_op(op: type[LamflowOP[Any, Any]]) -> type[LamflowOP[Any, JobOutput]]:
    """The op of ``<key>-stage``: the training op's inputs into the job's prefix; outputs its URI."""

    class Stage(LamflowOP[Any, JobOutput]):
        name = f"{op.name}-stage"
        Params = op.Params
        Input = op.Input
        Output = JobOutput

        def execute(self, op_in: OPIO) -> OPIO:
            uri = os.environ.get(JOB_URI_ENV, "").strip()
            if not uri:
                raise FatalError(f"{self.name}: {JOB_URI_ENV} is not set (the Argo renderer sets it)")
            put_values(dict(op_in), op.Input, uri, "inputs")
            return OPIO({"job": uri})

    Stage.__name__ = Stage.__qualname__ = f"Stage{op.__name__}"
    return Stage


def collect_op(op: type[LamflowOP[Any, Any]]) -> type[LamflowOP[CollectInput, Any]]:
    """The op of ``<key>``: the job's published outputs, as the training op's outputs."""

    class Collect(LamflowOP[CollectInput, Any]):
        name = f"{op.name}-collect"
        Params = CollectInput
        Input = CollectInput
        Output = op.Output

        def run(self, inp: CollectInput) -> Any:
            if _marker(inp.job) != DONE:
                raise FatalError(f"{op.name}: the training job published no outputs at {inp.job}")
            values = get_values(inp.job, "outputs", work_dir())
            return op.Output.model_validate(values)

    Collect.__name__ = Collect.__qualname__ = f"Collect{op.__name__}"
    return Collect


StagePretrainOP, CollectPretrainOP = stage_op(PretrainOP), collect_op(PretrainOP)
StageFinetuneOP, CollectFinetuneOP = stage_op(FinetuneOP), collect_op(FinetuneOP)
StageScratchOP, CollectScratchOP = stage_op(ScratchOP), collect_op(ScratchOP)
StageStudentOP, CollectStudentOP = stage_op(StudentOP), collect_op(StudentOP)
# training op name -> its stage op and its collect op
STAGE_OPS = dict(
    zip(TRAINING_OPS, (StagePretrainOP, StageFinetuneOP, StageScratchOP, StageStudentOP), strict=True)
)
COLLECT_OPS = dict(
    zip(TRAINING_OPS, (CollectPretrainOP, CollectFinetuneOP, CollectScratchOP, CollectStudentOP), strict=True)
)


def run_pod(op_name: str, uri: str, root: Path) -> int:
    """One pod of the job: fetch the inputs, run the training op in ``root``, publish or wait."""
    op = TRAINING_OPS[op_name]
    # a restarted job: an earlier attempt's failure must not end this attempt's waiting pods (this
    # attempt's own failure can only be written after every pod has joined the rendezvous, so after this)
    _clear(uri, FAILED)
    inputs = get_values(uri, "inputs", root / "inputs")
    step = root / "step"
    step.mkdir(parents=True, exist_ok=True)
    here = os.getcwd()
    os.chdir(step)
    try:
        output = op().execute(OPIO(inputs))
    except FollowerDone as done:
        print(f"lamflow: {done}; waiting for the pod of rank 0 to publish", file=sys.stderr, flush=True)
        return _wait(uri)
    except Exception as error:
        _mark(uri, FAILED, f"{type(error).__name__}: {error}")
        raise
    finally:
        os.chdir(here)
    put_values(dict(output), op.Output, uri, "outputs")
    _mark(uri, DONE, time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()))
    print(f"lamflow: outputs published to {uri}", file=sys.stderr, flush=True)
    return 0


def _wait(uri: str, limit_s: float = WAIT_LIMIT_S) -> int:
    """Exit status of a pod that did not hold rank 0: 0 once rank 0's pod published, 1 if it failed."""
    deadline = time.monotonic() + limit_s
    pause = 0.25
    client = s3_client()  # one for every look: a client costs tens of ms of CPU to make
    while time.monotonic() < deadline:
        marker = _marker(uri, client)
        if marker is not None:
            return 0 if marker == DONE else 1
        time.sleep(pause)
        pause = min(2 * pause, WAIT_S)  # soon after a short training, every WAIT_S during a long one
    print(f"lamflow: no outputs at {uri} after {limit_s:.0f} s", file=sys.stderr, flush=True)
    return 1


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 2 or args[0] not in TRAINING_OPS:
        print(
            f"usage: python -m lamflow.ops.job {{{','.join(TRAINING_OPS)}}} s3://bucket/prefix",
            file=sys.stderr,
        )
        return 2
    return run_pod(args[0], args[1], Path(os.environ.get("LAMFLOW_JOB_ROOT", "/tmp/lamflow-job")))


__all__ = ["COLLECT_OPS", "STAGE_OPS", "TRAINING_OPS", "collect_op", "run_pod", "stage_op"]

if __name__ == "__main__":  # pragma: no cover - each pod of a PyTorchJob
    sys.exit(main())
