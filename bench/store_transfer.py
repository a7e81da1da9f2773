"""Benchmark: pushing and pulling a deepmd/npy dataset through the lamflow store, against raw boto3 and
dflow's default artifact upload, all on the same local S3 endpoint (moto_server) in one run.

    .venv/bin/python bench/store_transfer.py [DATASET] [--rounds N]

Per round, in alternating order: lamflow push (fresh prefix) vs boto3 ``upload_file`` of every file (one
after another, as a script would) vs dflow ``upload_artifact`` (its default tar.gz path, via minio);
then lamflow pull vs boto3 ``download_file`` of every file vs dflow ``download_artifact``; then a re-push
of the unchanged dataset (bytes sent). Prints and writes bench/results/store_transfer.json.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
sys.path.insert(0, str(REPO))

from tests.s3_server import S3Server  # noqa: E402

DEFAULT = REPO.parent / "shared" / "data" / "datasets" / "water_h2o"


def timed(fn) -> float:
    os.sync()  # each tool starts with no other tool's writes still being flushed to disk
    time.sleep(1)
    started = time.perf_counter()
    fn()
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("dataset", nargs="?", type=Path, default=DEFAULT)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument(
        "--copies", type=int, default=1, help="Benchmark N copies of the dataset side by side (a bigger set)."
    )
    parser.add_argument(
        "--server",
        choices=["rclone", "moto"],
        default="rclone",
        help="The local S3 endpoint: rclone serve s3 (Go, on disk; the default) or moto (Python, in memory).",
    )
    parser.add_argument(
        "--no-dflow",
        action="store_true",
        help="Only lamflow and boto3 (dflow tars and gzips: slow past GBs).",
    )
    args = parser.parse_args()
    if args.copies > 1:
        big = Path(tempfile.mkdtemp(prefix="lamflow-bench-data-"))
        for i in range(args.copies):
            shutil.copytree(args.dataset, big / f"copy{i:03d}")
        args.dataset = big
    server = S3Server(kind=args.server).start()
    os.environ.update(server.env)
    bucket = server.bucket("bench")
    import boto3
    from dflow import config, download_artifact, s3_config, upload_artifact

    from lamflow.workflows.store import trees
    from lamflow.workflows.store.backends import open_location

    config["mode"] = "default"
    s3_config.update(
        endpoint=f"127.0.0.1:{server.port}",
        access_key=server.env["AWS_ACCESS_KEY_ID"],
        secret_key=server.env["AWS_SECRET_ACCESS_KEY"],
        bucket_name=bucket,
        secure=False,
    )
    client = boto3.client("s3")
    files = sorted(p for p in args.dataset.rglob("*") if p.is_file())
    size = sum(p.stat().st_size for p in files)
    rows: list[dict[str, float]] = []
    pulled: list[Path] = []  # removed at the end: on this VM's file system, deleting thousands of files
    # slows the file creations that follow for seconds, which would tax whichever pull came next
    try:
        for n in range(args.rounds):
            tmp = Path(tempfile.mkdtemp(prefix="lamflow-bench-"))
            pulled.append(tmp)
            backend = open_location(f"s3://{bucket}/round{n}/lamflow")
            row: dict[str, float] = {}

            def raw_push() -> None:
                for p in files:
                    client.upload_file(str(p), bucket, f"round{n}/raw/{p.relative_to(args.dataset)}")

            def raw_pull() -> None:
                for p in files:
                    target = tmp / "raw" / p.relative_to(args.dataset)
                    target.parent.mkdir(parents=True, exist_ok=True)
                    client.download_file(bucket, f"round{n}/raw/{p.relative_to(args.dataset)}", str(target))

            art = {}

            def dflow_push() -> None:
                art["a"] = upload_artifact(str(args.dataset))

            order = [
                ("lamflow_push", lambda: trees.push(args.dataset, backend)),
                ("boto3_push", raw_push),
                ("dflow_push", dflow_push),
            ][: 2 if args.no_dflow else 3]
            for name, fn in order if n % 2 == 0 else list(reversed(order)):
                row[name] = timed(fn)
            pulls = [
                ("lamflow_pull", lambda: trees.pull(backend, tmp / "lamflow")),
                ("boto3_pull", raw_pull),
                ("dflow_pull", lambda: download_artifact(art["a"], path=str(tmp / "dflow"))),
            ][: 2 if args.no_dflow else 3]
            for name, fn in pulls if n % 2 == 0 else list(reversed(pulls)):
                row[name] = timed(fn)
            again = trees.push(args.dataset, backend)
            row["repush_bytes_sent"] = again.bytes_moved
            assert trees.tree_digest(trees.scan(tmp / "lamflow")) == trees.tree_digest(
                trees.scan(args.dataset)
            )
            rows.append(row)
            print(json.dumps({k: round(v, 4) for k, v in row.items()}))
    finally:
        server.stop()
        for folder in pulled:
            shutil.rmtree(folder, ignore_errors=True)

    def mean(key: str) -> float:
        return statistics.mean(r[key] for r in rows)

    result = {
        "dataset": str(args.dataset),
        "copies": args.copies,
        "server": args.server,
        "files": len(files),
        "bytes": size,
        "rounds": rows,
        "push_throughput_vs_boto3": round(mean("boto3_push") / mean("lamflow_push"), 2),
        "pull_throughput_vs_boto3": round(mean("boto3_pull") / mean("lamflow_pull"), 2),
        **(
            {}
            if args.no_dflow
            else {
                "push_speedup_vs_dflow": round(mean("dflow_push") / mean("lamflow_push"), 2),
                "pull_speedup_vs_dflow": round(mean("dflow_pull") / mean("lamflow_pull"), 2),
            }
        ),
        "repush_bytes_sent": max(r["repush_bytes_sent"] for r in rows),
    }
    name = args.dataset.name if args.copies == 1 and args.dataset != DEFAULT else f"x{args.copies}"
    out = HERE / "results" / f"store_transfer-{args.server}-{name}.json"
    out.parent.mkdir(exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps({k: v for k, v in result.items() if k != "rounds"}, indent=2))


if __name__ == "__main__":
    main()
