"""End to end with the real DeePMD-kit through the installed CLI on the local engine (slow).

pretrain (2 heads) -> freeze each head -> finetune (from a head) -> change-bias -> test, then a second run
that fine-tunes from the first run's checkpoint as an external model file with a random fitting net.
"""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path

import pytest

from tests.conftest import DEMO_DATA, SHARED_DATASETS, minimal_spec, run_cli_process

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def pipeline_run(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("pipeline")
    spec = minimal_spec()
    spec["stages"]["pretrain"]["training"] = {"steps": 20}
    spec["stages"]["finetune"][0]["training"] = {"steps": 10}
    spec_file = tmp / "spec.yaml"
    import yaml

    spec_file.write_text(yaml.safe_dump(spec, sort_keys=False))
    result = run_cli_process(
        "submit",
        str(spec_file),
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
        "test-pretrain-water-on-gete-test-change-bias-gete",
        "test-finetune-gete-on-gete-test",
    }
    for record in summary["steps"].values():
        assert record["phase"] == "Succeeded"
        assert record["duration_s"] > 0 and record["started_at"] <= record["finished_at"]
    pretrain = summary["steps"]["pretrain"]
    assert pretrain["parameters"]["lcurve_last"]["step"] == 20
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
        ("finetune.gete", "gete-test", None),
    }
    for m in metrics:
        assert m["metrics"]["frames"] == 12
        for key in ("energy_rmse_per_atom", "energy_mae_per_atom", "force_rmse", "force_mae"):
            assert math.isfinite(m["metrics"][key]) and m["metrics"][key] > 0


def test_grouped_short_steps_match_separate_processes_bit_for_bit(pipeline_run):
    """The fixture's run ran its short steps in step groups. The same spec again with --no-group, on the
    same store with the short steps' stored results evicted: training comes from the step cache (the very
    same checkpoints), every freeze, change-bias and test is a dp process of its own, and every metric is
    identical to the last bit."""
    run_dir, _ = pipeline_run
    grouped = json.loads((run_dir / "summary.json").read_text())
    assert grouped["steps"]["freeze-water"]["group"] == "after-pretrain"
    assert grouped["steps"]["test-finetune-gete-on-gete-test"]["group"] == "after-finetune-gete"
    store = run_dir.parent / "store"
    short = [k for k, r in grouped["steps"].items() if r["group"]]
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


def test_failing_step_fails_the_run_with_its_error(tmp_path, write_spec):
    spec = minimal_spec()
    spec["model"]["descriptor"] = {"repinit": {"activation_function": "no-such-activation"}}
    out = run_cli_process("submit", str(write_spec(spec)), "--run-dir", str(tmp_path / "bad-run"))
    assert out.returncode == 1
    summary = json.loads((tmp_path / "bad-run" / "summary.json").read_text())
    assert summary["status"] == "Failed"
    assert summary["steps"]["pretrain"]["phase"] == "Failed"
    assert summary["error"].startswith("step pretrain failed:")
    assert all(r["phase"] == "Skipped" for k, r in summary["steps"].items() if k != "pretrain")
    assert "✗ pretrain" in out.stdout
    assert Path(tmp_path / "bad-run" / "spec.yaml").exists()


@pytest.mark.skipif(not SHARED_DATASETS.exists(), reason="../shared not present")
def test_someone_elses_spec_single_task_dpa3(tmp_path, write_spec):
    """A differently shaped spec on other data runs unchanged: single-head DPA-3 pretraining on the full
    water set (a system with two set.* folders), validation data, a random-fitting fine-tune, all frames."""
    water = SHARED_DATASETS / "water_h2o"
    spec = {
        "name": "water-dpa3",
        "datasets": {
            "train": {"path": str(water / "data_1")},
            "valid": {"path": str(water / "data_3")},
            "small": {"path": str(water / "data_0")},
        },
        "model": {"preset": "dpa3-tiny", "fitting_net": {"neuron": [16, 16]}},
        "stages": {
            "pretrain": {
                "heads": {"h2o": {"datasets": ["train"], "validation": ["valid"]}},
                "training": {"steps": 6, "batch_size": 1, "disp_freq": 3},
            },
            "finetune": [
                {
                    "name": "again",
                    "from": {"head": "random"},
                    "datasets": ["small"],
                    "training": {"steps": 4, "batch_size": 1},
                }
            ],
            "test": [{"models": ["pretrain.h2o", "finetune.again"], "datasets": ["valid"], "frames": 3}],
        },
    }
    out = run_cli_process(
        "submit", str(write_spec(spec)), "--run-dir", str(tmp_path / "run"), "--output", "json"
    )
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr
    summary = json.loads(out.stdout)
    inp = json.loads((tmp_path / "run" / summary["steps"]["pretrain"]["outputs"]["input_json"]).read_text())
    assert inp["model"]["descriptor"]["type"] == "dpa3" and "model_dict" not in inp["model"]
    assert inp["training"]["validation_data"]["systems"]
    lcurve = summary["steps"]["pretrain"]["parameters"]["lcurve_last"]
    assert lcurve["step"] == 6 and "rmse_e_val" in lcurve
    assert [t["metrics"]["frames"] for t in summary["tests"]] == [3, 3]


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


def test_real_finetune_that_adds_elements_surfaces_deepmd_warning(tmp_path, write_spec):
    """Pretrain on water (O, H), fine-tune that checkpoint on GeTe: DeePMD-kit warns that Ge and Te are
    randomly initialised, and the warning reaches summary.json and the terminal."""
    water = {
        "name": "water-only",
        "datasets": {"water": {"path": str(DEMO_DATA / "water/train")}},
        "model": {"preset": "dpa2-tiny"},
        "stages": {
            "pretrain": {"heads": {"h2o": {"datasets": ["water"]}}, "training": {"steps": 2, "batch_size": 1}}
        },
    }
    first = run_cli_process(
        "submit", str(write_spec(water, "water.yaml")), "--run-dir", str(tmp_path / "a"), "--output", "json"
    )
    assert first.returncode == 0, first.stdout[-2000:] + first.stderr
    checkpoint = tmp_path / "a" / json.loads(first.stdout)["checkpoints"]["pretrain"]
    gete = {
        "name": "to-gete",
        "datasets": {"gete": {"path": str(DEMO_DATA / "gete/train")}},
        "model": {"preset": "dpa2-tiny"},
        "stages": {
            "finetune": [
                {"name": "gete", "from": {"model_file": str(checkpoint)}, "datasets": ["gete"],
                 "training": {"steps": 2, "batch_size": 1}}
            ]
        },
    }  # fmt: skip
    second = run_cli_process("submit", str(write_spec(gete, "gete.yaml")), "--run-dir", str(tmp_path / "b"))
    assert second.returncode == 0, second.stdout[-2000:] + second.stderr
    summary = json.loads((tmp_path / "b" / "summary.json").read_text())
    warning = "types not in the pretrained model are randomly initialised: ['Ge', 'Te']"
    assert summary["steps"]["finetune-gete"]["warnings"] == [warning]
    assert warning in second.stdout
