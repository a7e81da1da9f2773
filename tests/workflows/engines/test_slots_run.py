"""The local engine runs independent steps at once, each on GPUs and cores of its own (fake dp, a fake
machine of 2 GPUs and 4 cores set through the settings: this runs on any machine)."""

from __future__ import annotations

import json
from itertools import combinations

import pytest
import yaml

from tests.conftest import FakeDp, minimal_spec, run_cli

TRAINING_OPS = ("pretrain", "finetune")
FAKE_MACHINE = {"LAMFLOW_LOCAL_GPUS": "2", "LAMFLOW_LOCAL_CORES": "4", "LAMFLOW_REPORT": "1"}


@pytest.fixture(scope="module")
def transfer_run(tmp_path_factory):
    """A pretraining, then two fine-tunes that may run side by side, each 0.5 s longer than the fake's own
    time so that the two overlap; and their tests (grouped short steps)."""
    tmp = tmp_path_factory.mktemp("slots")
    spec = minimal_spec()
    spec["stages"]["finetune"].append(
        {"name": "gete2", "from": {"head": "molecules"}, "datasets": ["gete"], "training": {"steps": 10}}
    )
    spec["stages"]["test"].append({"models": ["finetune.gete2"], "datasets": ["gete-test"]})
    (tmp / "spec.yaml").write_text(yaml.safe_dump(spec, sort_keys=False))
    fake = FakeDp(tmp / "calls.jsonl")
    env = {**fake.env, **FAKE_MACHINE, "LAMFLOW_FAKE_DP_SLEEP": "train:0.5"}
    result = run_cli("submit", str(tmp / "spec.yaml"), "--run-dir", str(tmp / "run"), env=env)
    summary = json.loads((tmp / "run" / "summary.json").read_text())
    return tmp / "run", result, fake, summary


def _held(run_dir, key):
    """When a step held its units (the grant's record: taken, released)."""
    grant = json.loads((run_dir / "slots" / "granted" / f"{key}.json").read_text())
    return grant["granted_at"], grant["released_at"]


def test_concurrent_training_steps_never_share_a_gpu(transfer_run):
    run_dir, result, _, summary = transfer_run
    assert result.returncode == 0, result.stderr
    trainings = {k: r for k, r in summary["steps"].items() if r["op"] in TRAINING_OPS}
    assert set(trainings) == {"pretrain", "finetune-gete", "finetune-gete2"}
    overlapping = 0
    for (a, ra), (b, rb) in combinations(trainings.items(), 2):
        (start_a, end_a), (start_b, end_b) = _held(run_dir, a), _held(run_dir, b)
        if start_a < end_b and start_b < end_a:
            overlapping += 1
            assert set(ra["ran_on"]["gpus"]).isdisjoint(rb["ran_on"]["gpus"]), (a, b)
    assert overlapping >= 1, "with 2 GPUs free, the two fine-tunes must have run side by side"
    assert all(len(r["ran_on"]["gpus"]) == 1 and r["ran_on"]["cores"] == 2 for r in trainings.values())


def _step_of(record):
    """The step key of a fake dp call (its working directory is under steps/<key>/)."""
    parts = record["cwd"].split("/")
    return parts[parts.index("steps") + 1]


def test_each_dp_sees_only_its_own_gpu_and_threads(transfer_run):
    _, _, fake, summary = transfer_run
    by_kind: dict[bool, list] = {True: [], False: []}
    for record in fake.records():
        by_kind[summary["steps"][_step_of(record)]["op"] in TRAINING_OPS].append(record)
    assert by_kind[True] and by_kind[False]
    for record in by_kind[True]:  # dp train and the freeze after it
        assert record["env"]["CUDA_VISIBLE_DEVICES"] in ("0", "1")
        assert record["env"]["OMP_NUM_THREADS"] == record["env"]["DP_INTRA_OP_PARALLELISM_THREADS"] == "2"
        assert record["env"]["DP_INTER_OP_PARALLELISM_THREADS"] == "1"
        assert (
            record["env"]["CUDA_VISIBLE_DEVICES"] == summary["steps"][_step_of(record)]["ran_on"]["gpus"][0]
        )
    for record in by_kind[False]:  # freeze, change-bias, test steps: a core and no GPU
        assert record["env"]["CUDA_VISIBLE_DEVICES"] == "" and record["env"]["OMP_NUM_THREADS"] == "1"


def test_grouped_steps_hold_a_slot_and_the_record_status_and_report_show_it(transfer_run):
    run_dir, _, _, summary = transfer_run
    grouped = [r for r in summary["steps"].values() if r["group"]]
    assert grouped and all(
        r["ran_on"] == {"gpus": [], "cores": 1, "waited_s": r["ran_on"]["waited_s"]} for r in grouped
    )
    status = run_cli("status", str(run_dir), env={"COLUMNS": "250"})
    line = next(x for x in status.stdout.splitlines() if "finetune-gete2 " in x)
    assert "GPU 0, 2 cores" in line or "GPU 1, 2 cores" in line
    page = (run_dir / "report" / "index.html").read_text()
    assert "<th>held</th>" in page and "2 cores</td>" in page


def test_a_training_step_on_two_gpus_runs_under_torchrun(tmp_path, write_spec):
    spec = minimal_spec()
    spec["stages"] = {"pretrain": spec["stages"]["pretrain"]}
    fake = FakeDp(tmp_path / "calls.jsonl")
    env = {**fake.env, **FAKE_MACHINE, "LAMFLOW_LOCAL_TRAIN_GPUS": "2"}
    result = run_cli("submit", str(write_spec(spec)), "--run-dir", str(tmp_path / "run"), env=env)
    assert result.returncode == 0, result.stderr
    trains = [r for r in fake.records() if r["argv"][1] == "train"]
    # torchrun started one dp per GPU: both see the pair; rank 0 alone wrote the outputs
    assert sorted(r["env"]["RANK"] for r in trains) == ["0", "1"]
    assert {r["env"]["WORLD_SIZE"] for r in trains} == {"2"}
    assert {r["env"]["CUDA_VISIBLE_DEVICES"] for r in trains} == {"0,1"}
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert summary["steps"]["pretrain"]["ran_on"]["gpus"] == ["0", "1"]


def test_a_training_step_on_two_nodes_runs_two_torchruns_meeting_at_one_rendezvous(tmp_path, write_spec):
    """``resources.pretrain.nodes: 2`` on this machine: two torchrun "nodes" (the command the pods of a
    PyTorchJob run), c10d rendezvous on 127.0.0.1; each node one process on one GPU of the fake machine."""
    spec = minimal_spec(resources={"pretrain": {"nodes": 2, "gpus": 1}})
    spec["stages"] = {"pretrain": spec["stages"]["pretrain"]}
    fake = FakeDp(tmp_path / "calls.jsonl")
    result = run_cli(
        "submit", str(write_spec(spec)), "--run-dir", str(tmp_path / "run"), env={**fake.env, **FAKE_MACHINE}
    )
    assert result.returncode == 0, result.stderr
    trains = [r for r in fake.records() if r["argv"][1] == "train"]
    assert sorted((r["env"]["GROUP_RANK"], r["env"]["RANK"]) for r in trains) == [("0", "0"), ("1", "1")]
    assert {r["env"]["WORLD_SIZE"] for r in trains} == {"2"}
    assert {r["env"]["LOCAL_RANK"] for r in trains} == {"0"}
    # each node on a GPU of its own, as each pod of a job has its own (c10d numbers the nodes as they join)
    assert sorted(r["env"]["CUDA_VISIBLE_DEVICES"] for r in trains) == ["0", "1"]
    run_dir = tmp_path / "run"
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["steps"]["pretrain"]["ran_on"]["gpus"] == ["0", "1"]
    work = run_dir / "steps" / "pretrain" / "workdir" / "work"
    torchruns = [line for line in (work / "train.log").read_text().splitlines() if line.startswith("$ ")]
    assert "--nnodes=2" in torchruns[0] and "--rdzv_backend=c10d" in torchruns[0]
    assert "--rdzv_endpoint=127.0.0.1:" in torchruns[0] and "--nproc_per_node=1" in torchruns[0]
    assert (work / "train.node-1.log").read_text().startswith(torchruns[0])  # the same command line
    assert (work / "lcurve.out").is_file()


def test_a_plan_the_machine_cannot_hold_exits_2_before_anything_runs(tmp_path, write_spec):
    fake = FakeDp(tmp_path / "calls.jsonl")
    env = {**fake.env, **FAKE_MACHINE, "LAMFLOW_LOCAL_TRAIN_GPUS": "3"}
    result = run_cli("submit", str(write_spec(minimal_spec())), "--run-dir", str(tmp_path / "run"), env=env)
    assert result.returncode == 2
    assert (
        result.stderr.strip()
        .splitlines()[-1]
        .endswith(
            "LAMFLOW_LOCAL_TRAIN_GPUS: step pretrain asks for 3 GPU(s), but this machine has 2 "
            "(CUDA_VISIBLE_DEVICES or LAMFLOW_LOCAL_GPUS); ask for fewer or run on Argo"
        )
    )
    assert fake.calls() == []
