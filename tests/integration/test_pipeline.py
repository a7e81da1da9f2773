"""End to end with the real DeePMD-kit through the installed CLI on the local engine (slow).

The README demo (examples/demo.yaml): pretrain (2 heads) -> freeze each head -> finetune (from a head) ->
change-bias -> test, which must visibly learn; then runs that reuse it: the same spec with the fake dp (to
compare files), with --no-group (to compare results bit for bit), and a fine-tune from its checkpoint as an
external model file with a random fitting net.
"""

from __future__ import annotations

import json
import math
import os
import shutil
from pathlib import Path

import pytest

from tests.conftest import DEMO_DATA, EXAMPLES, minimal_spec, run_cli_process

pytestmark = pytest.mark.slow


def demo_spec(tmp: Path) -> Path:
    """examples/demo.yaml, as the README's main command runs it, with its dataset paths made absolute (so
    that the copy the run keeps, ``spec.yaml``, can be submitted again from anywhere)."""
    import yaml

    spec = yaml.safe_load((EXAMPLES / "demo.yaml").read_text())
    for dataset in spec["datasets"].values():
        dataset["path"] = str(EXAMPLES / dataset["path"])
    path = tmp / "demo.yaml"
    path.write_text(yaml.safe_dump(spec, sort_keys=False))
    return path


@pytest.fixture(scope="module")
def pipeline_run(tmp_path_factory):
    """The README demo, real DeePMD-kit end to end: every other test here reads this one run."""
    tmp = tmp_path_factory.mktemp("pipeline")
    result = run_cli_process(
        "submit",
        str(demo_spec(tmp)),
        "--run-dir",
        str(tmp / "run"),
        cwd=tmp,
        env={"LAMFLOW_STORE": str(tmp / "store")},
    )
    return tmp / "run", result


def test_run_succeeds_and_reports_progress(pipeline_run):
    run_dir, result = pipeline_run
    assert result.returncode == 0, result.stdout + result.stderr
    for key in ("pretrain", "freeze-water", "finetune-gete", "test-finetune-gete-on-gete-test"):
        assert f"✓ {key}" in result.stdout
    assert "Test errors" in result.stdout
    assert "DEEPMD INFO" not in result.stdout, "step output belongs in engine.log"
    assert "DEEPMD INFO" in (run_dir / "engine.log").read_text()


def test_summary_records_every_step(pipeline_run):
    run_dir, _ = pipeline_run
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["status"] == "Succeeded"
    assert set(summary["steps"]) == {
        "pretrain",
        "freeze-water",
        "freeze-molecules",
        "finetune-gete",
        "change-bias-pretrain-water-on-gete",
        "change-bias-pretrain-molecules-on-gete",
        "test-pretrain-water-on-gete-test-change-bias-gete",
        "test-pretrain-molecules-on-gete-test-change-bias-gete",
        "test-finetune-gete-on-gete-test",
    }
    for record in summary["steps"].values():
        assert record["phase"] == "Succeeded"
        assert record["duration_s"] > 0 and record["started_at"] <= record["finished_at"]
    pretrain = summary["steps"]["pretrain"]
    assert pretrain["parameters"]["lcurve_last"]["step"] == 200
    inp = json.loads((run_dir / pretrain["outputs"]["input_json"]).read_text())
    assert set(inp["model"]["model_dict"]) == {"water", "molecules"}
    assert inp["training"]["data_dict"]["water"]["training_data"]["systems"], "systems were filled in"
    assert (run_dir / pretrain["outputs"]["lcurve"]).read_text().startswith("#")
    assert (run_dir / pretrain["outputs"]["checkpoint"]).suffix == ".pt"
    finetune = summary["steps"]["finetune-gete"]["outputs"]
    assert "--finetune" in (run_dir / finetune["log"]).read_text()


def test_frozen_models_and_finite_metrics(pipeline_run):
    run_dir, _ = pipeline_run
    summary = json.loads((run_dir / "summary.json").read_text())
    assert set(summary["models"]) == {"pretrain.water", "pretrain.molecules", "finetune.gete"}
    for path in summary["models"].values():
        model = run_dir / path
        assert model.suffix == ".pth" and model.resolve().stat().st_size > 10_000
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert {(m["model"], m["dataset"], m["change_bias_on"]) for m in metrics} == {
        ("pretrain.water", "gete-test", "gete"),
        ("pretrain.molecules", "gete-test", "gete"),
        ("finetune.gete", "gete-test", None),
    }
    for m in metrics:
        assert m["metrics"]["frames"] == 12
        for key in ("energy_rmse_per_atom", "energy_mae_per_atom", "force_rmse", "force_mae"):
            assert math.isfinite(m["metrics"][key]) and m["metrics"][key] > 0


def test_the_demo_learns_fine_tuning_beats_zero_shot_and_the_label_spread(pipeline_run):
    """On the held-out GeTe frames the fine-tuned model's force RMSE is below 0.8x the zero-shot heads'
    and below the spread of the labels themselves (what predicting zero force would score)."""
    import numpy as np

    run_dir, result = pipeline_run
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    tests = json.loads((run_dir / "metrics.json").read_text())
    force = {t["model"]: t["metrics"]["force_rmse"] for t in tests if t["dataset"] == "gete-test"}
    zero_shot = min(force["pretrain.water"], force["pretrain.molecules"])
    labels = np.concatenate([np.load(p).ravel() for p in (DEMO_DATA / "gete/test").glob("*/set.*/force.npy")])
    spread = float(np.sqrt(np.mean(labels**2)))
    assert force["finetune.gete"] < 0.8 * zero_shot, force
    assert force["finetune.gete"] < spread, (force, spread)
    # the step records where real dp trained, read from DeePMD-kit's own start-up summary
    summary = json.loads((run_dir / "summary.json").read_text())
    expected = "CPU" if os.environ.get("CUDA_VISIBLE_DEVICES", "unset") == "" or not _cuda() else "CUDA"
    for step in ("pretrain", "finetune-gete"):
        assert summary["steps"][step]["parameters"]["device"].startswith(expected), summary["steps"][step]


def _cuda() -> bool:
    import torch

    return torch.cuda.is_available()


def test_grouped_short_steps_match_separate_processes_bit_for_bit(pipeline_run):
    """The fixture's run ran its short steps in step groups. The same spec again with --no-group, on the
    same store with the stored results of one chain of each group evicted (the water head's freeze,
    change-bias and test; the fine-tune's test): training comes from the step cache (the very same
    checkpoints), each evicted step is a dp process of its own, and every metric is identical to the last
    bit. (The molecules head's chain is the same kind of step; it stays cached to save four dp start-ups.)"""
    run_dir, _ = pipeline_run
    grouped = json.loads((run_dir / "summary.json").read_text())
    assert grouped["steps"]["freeze-water"]["group"] == "after-pretrain"
    assert grouped["steps"]["test-finetune-gete-on-gete-test"]["group"] == "after-finetune-gete"
    store = run_dir.parent / "store"
    short = [
        "freeze-water",
        "change-bias-pretrain-water-on-gete",
        "test-pretrain-water-on-gete-test-change-bias-gete",
        "test-finetune-gete-on-gete-test",
    ]
    assert all(grouped["steps"][k]["group"] for k in short)
    for key in short:
        shutil.rmtree(store / "steps" / grouped["steps"][key]["cache_key"])
    alone_dir = run_dir.parent / "alone"
    out = run_cli_process(
        "submit", str(run_dir / "spec.yaml"), "--run-dir", str(alone_dir), "--no-group",
        env={"LAMFLOW_STORE": str(store)},
    )  # fmt: skip
    assert out.returncode == 0, out.stdout + out.stderr
    alone = json.loads((alone_dir / "summary.json").read_text())
    phases = {k: r["phase"] for k, r in alone["steps"].items()}
    assert phases == {k: "Succeeded" if k in short else "Cached" for k in grouped["steps"]}
    assert all(r["group"] is None for r in alone["steps"].values())
    assert alone["tests"] and [t["metrics"] for t in alone["tests"]] == [
        t["metrics"] for t in grouped["tests"]
    ]


def test_status_command(pipeline_run):
    run_dir, _ = pipeline_run
    as_json = run_cli_process("status", str(run_dir), "--output", "json")
    assert as_json.returncode == 0
    assert json.loads(as_json.stdout)["status"] == "Succeeded"
    text = run_cli_process("status", str(run_dir))
    assert "finetune.gete" in text.stdout and "Succeeded" in text.stdout


def test_finetune_from_external_checkpoint_on_hdf5_data(pipeline_run, tmp_path, write_spec):
    """External .pt checkpoint, random fitting net, and a deepmd/hdf5 dataset written by dpdata."""
    import dpdata

    run_dir, result = pipeline_run
    assert result.returncode == 0
    summary = json.loads((run_dir / "summary.json").read_text())
    checkpoint = run_dir / summary["steps"]["pretrain"]["outputs"]["checkpoint"]
    dpdata.LabeledSystem(str(DEMO_DATA / "gete/train/gete"), fmt="deepmd/npy").to(
        "deepmd/hdf5", str(tmp_path / "gete.hdf5")
    )
    spec = minimal_spec()
    spec["datasets"]["gete"] = {"path": str(tmp_path / "gete.hdf5"), "format": "deepmd/hdf5"}
    spec["stages"] = {
        "finetune": [
            {
                "name": "ext",
                "from": {"model_file": str(checkpoint), "head": "random"},
                "datasets": ["gete"],
                "training": {"steps": 5},
            }
        ],
        "test": [{"models": ["finetune.ext"], "datasets": ["gete-test"], "frames": 4}],
    }
    out = run_cli_process(
        "submit", str(write_spec(spec)), "--run-dir", str(tmp_path / "ext-run"), "--output", "json"
    )
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr
    ext = json.loads(out.stdout)
    assert ext["status"] == "Succeeded"
    train_log = (tmp_path / "ext-run" / ext["steps"]["finetune-ext"]["outputs"]["log"]).read_text()
    assert "--model-branch RANDOM" in train_log
    assert ext["tests"][0]["metrics"]["frames"] == 4


@pytest.fixture(scope="module")
def fake_pipeline_run(pipeline_run, tmp_path_factory):
    """The same spec as ``pipeline_run``, run with the fake dp."""
    from tests.conftest import FakeDp

    real_dir, _ = pipeline_run
    tmp = tmp_path_factory.mktemp("fake-pipeline")
    fake = FakeDp(tmp / "calls.jsonl")
    result = run_cli_process(
        "submit", str(real_dir / "spec.yaml"), "--run-dir", str(tmp / "run"), cwd=tmp, env=fake.env
    )
    assert result.returncode == 0, result.stdout + result.stderr
    return tmp / "run"


def _work(run_dir: Path, key: str) -> Path:
    return run_dir / "steps" / key / "workdir" / "work"


def _lcurve_columns(path: Path) -> list[str]:
    header = path.read_text().splitlines()[0]
    assert header.startswith("# step "), header  # DeePMD-kit's layout, which lamflow parses
    return header[1:].split()


def test_fake_dp_writes_what_the_real_dp_writes(pipeline_run, fake_pipeline_run):
    """The fast tier's fake dp must not drift from DeePMD-kit: same files, same formats, per step."""
    import zipfile

    import torch

    from lamflow.ops.test import SYSTEMS_FILE, parse_test_metrics

    real_dir, result = pipeline_run
    assert result.returncode == 0
    fake_dir = fake_pipeline_run
    keys = json.loads((real_dir / "summary.json").read_text())["steps"]
    for key in keys:
        real, fake = _work(real_dir, key), _work(fake_dir, key)
        real_files = {p.name for p in real.iterdir() if p.name != "systems"}
        fake_files = {p.name for p in fake.iterdir() if p.name != "systems"}
        # the real dp also writes input_v2_compat.json and stat files; lamflow reads none of them
        assert fake_files <= real_files, (
            f"{key}: fake writes {sorted(fake_files - real_files)} the real dp does not"
        )
        assert {f for f in real_files if f.endswith((".pt", ".pth", ".out", ".log"))} <= fake_files | {
            "lcurve.out"
        }
    # training: lcurve columns, checkpoint pointer and structure (as DeePMD-kit loads it)
    for key in ("pretrain", "finetune-gete"):
        real, fake = _work(real_dir, key), _work(fake_dir, key)
        assert _lcurve_columns(fake / "lcurve.out") == _lcurve_columns(real / "lcurve.out"), key
        assert (fake / "checkpoint").read_text() == (real / "checkpoint").read_text()
        assert (fake / "model.ckpt.pt").resolve().name == (real / "model.ckpt.pt").resolve().name
        r = torch.load(real / "model.ckpt.pt", map_location="cpu", weights_only=True)
        f = torch.load(fake / "model.ckpt.pt", map_location="cpu", weights_only=True)
        assert set(f) == set(r) == {"model", "optimizer"}
        r_state, f_state = r["model"]["_extra_state"], f["model"]["_extra_state"]
        assert set(f_state) == set(r_state) and set(f_state["train_infos"]) == set(r_state["train_infos"])
        assert f_state["train_infos"]["step"] == r_state["train_infos"]["step"]
        assert set(f_state["model_params"]) <= set(r_state["model_params"])
        assert ("model_dict" in f_state["model_params"]) == ("model_dict" in r_state["model_params"])
    # frozen models: the TorchScript archive layout
    for key in ("freeze-water", "finetune-gete", "change-bias-pretrain-water-on-gete"):
        real_names = {
            n.split("/", 1)[1] for n in zipfile.ZipFile(_work(real_dir, key) / "model.pth").namelist()
        }
        fake_names = {
            n.split("/", 1)[1] for n in zipfile.ZipFile(_work(fake_dir, key) / "model.pth").namelist()
        }
        assert fake_names - {"extra/fake_dp.json"} <= real_names, key
    # dp test: the block lamflow parses, and the detail files' names, headers and shapes
    key = "test-finetune-gete-on-gete-test"
    real, fake = _work(real_dir, key), _work(fake_dir, key)
    real_metrics = parse_test_metrics((real / "test.log").read_text())
    assert set(parse_test_metrics((fake / "test.log").read_text())) == set(real_metrics)
    assert (fake / "detail" / SYSTEMS_FILE).is_file()  # the test op's record of the systems, not dp's
    for detail in (real / "detail").iterdir():
        if detail.name == SYSTEMS_FILE:
            continue
        fake_detail = fake / "detail" / detail.name
        real_lines, fake_lines = detail.read_text().splitlines(), fake_detail.read_text().splitlines()
        assert fake_lines[0].split(":", 1)[1] == real_lines[0].split(":", 1)[1], detail.name  # column names
        assert len(fake_lines) == len(real_lines)
        assert len(fake_lines[1].split()) == len(real_lines[1].split())
