"""Step cache, resume and model registry through the installed CLI, with the fake dp (fast tier)."""

from __future__ import annotations

import json
from pathlib import Path

import yaml

from tests.conftest import DEMO_DATA, FakeDp, run_cli


def _spec(tmp_path: Path, name: str = "spec.yaml", **changes) -> Path:
    """A small spec on the demo data (pretrain, freeze, fine-tune, test: 4 steps), with changes:
    {"finetune_steps": n, "pretrain_save": n}."""
    spec = {
        "name": "small",
        "datasets": {
            "water": {"path": str(DEMO_DATA / "water/train")},
            "gete": {"path": str(DEMO_DATA / "gete/train")},
            "gete-test": {"path": str(DEMO_DATA / "gete/test")},
        },
        "model": {"preset": "dpa2-tiny"},
        "stages": {
            "pretrain": {
                "heads": {"water": {"datasets": ["water"]}},
                "training": {"steps": 200, "save_freq": changes.get("pretrain_save", 200)},
            },
            "finetune": [
                {
                    "name": "gete",
                    "from": {"head": "water"},
                    "datasets": ["gete"],
                    "training": {"steps": changes.get("finetune_steps", 10)},
                }
            ],
            "test": [{"models": ["finetune.gete"], "datasets": ["gete-test"]}],
        },
        "registry": {"promote_gate": {"dataset": "gete-test", "metric": "force_rmse"}},
    }
    path = tmp_path / name
    path.write_text(yaml.safe_dump(spec, sort_keys=False))
    return path


def _summary(run_dir: Path) -> dict:
    return json.loads((run_dir / "summary.json").read_text())


def _phases(run_dir: Path) -> dict[str, str]:
    return {k: r["phase"] for k, r in _summary(run_dir)["steps"].items()}


def test_cache_reuse_reruns_and_the_registry(tmp_path):
    """Second submit reuses every step; a changed fine-tune reruns only it and its test; --no-cache runs all;
    the registry holds every model with lineage, and promotion follows the spec's gate."""
    fake = FakeDp(tmp_path / "calls.jsonl")
    spec = _spec(tmp_path)
    first = run_cli("submit", str(spec), "--run-dir", str(tmp_path / "r1"), env=fake.env)
    assert first.returncode == 0, first.stderr
    calls = len(fake.calls())
    second = run_cli("submit", str(spec), "--run-dir", str(tmp_path / "r2"), env=fake.env)
    assert second.returncode == 0, second.stderr
    assert len(fake.calls()) == calls, "nothing runs again"
    assert set(_phases(tmp_path / "r2").values()) == {"Cached"}
    assert "≡ finetune-gete" in second.stdout and "Cached" in second.stdout
    one, two = _summary(tmp_path / "r1"), _summary(tmp_path / "r2")
    assert [t["metrics"] for t in one["tests"]] == [t["metrics"] for t in two["tests"]]
    assert all((tmp_path / "r2" / p).resolve().is_file() for p in two["models"].values())
    assert {k: r["cache_key"] for k, r in one["steps"].items()} == {
        k: r["cache_key"] for k, r in two["steps"].items()
    }
    assert "Cached" in run_cli("status", str(tmp_path / "r2")).stdout

    changed = _spec(tmp_path, "changed.yaml", finetune_steps=7)
    third = run_cli("submit", str(changed), "--run-dir", str(tmp_path / "r3"), env=fake.env)
    assert third.returncode == 0, third.stderr
    rerun = {k for k, p in _phases(tmp_path / "r3").items() if p == "Succeeded"}
    assert rerun == {"finetune-gete", "test-finetune-gete-on-gete-test"}
    assert len(fake.calls()) == calls + 3  # train + freeze of the fine-tune, its test

    no_cache = run_cli("submit", str(spec), "--run-dir", str(tmp_path / "r4"), "--no-cache", env=fake.env)
    assert no_cache.returncode == 0 and set(_phases(tmp_path / "r4").values()) == {"Succeeded"}
    assert _summary(tmp_path / "r4")["cache"] is False

    # the registry: every frozen model once, with lineage (in-process, plus the CLI where it matters)
    from lamflow.workflows import api
    from lamflow.workflows.settings import Settings

    settings = Settings(store=fake.env["LAMFLOW_STORE"])
    records, _ = api.models(settings)
    tuned = [m for m in records if m.reference == "finetune.gete"]
    assert {m.reference for m in records} == {"pretrain.water", "finetune.gete"}
    assert {m.run_id for m in tuned} >= {"r1", "r3"}  # r2 reused r1's model: recorded once
    old = next(m for m in tuned if m.run_id == "r1")
    new = next(m for m in tuned if m.run_id == "r3")
    assert old.channel == "small/finetune.gete" and set(old.datasets) == {"water", "gete"}
    assert [p["reference"] for p in old.parents] == ["pretrain"]
    assert old.metrics["gete-test"]["force_rmse"] > 0 and old.gate == {
        "dataset": "gete-test",
        "metric": "force_rmse",
    }
    assert old.tools["deepmd-kit"] and old.spec_sha256 != new.spec_sha256
    listed = run_cli("models", "list", env=fake.env)
    assert old.id in listed.stdout and "force_rmse" in listed.stdout

    assert api.model_promote(old.id, settings) == (old, None)
    api.model_pull(old.id[:24], tmp_path / "m.pth", settings)
    assert (tmp_path / "m.pth").read_bytes() == (
        tmp_path / "r1" / "models" / "finetune-gete.pth"
    ).read_bytes()
    mine, theirs = new.metrics["gete-test"]["force_rmse"], old.metrics["gete-test"]["force_rmse"]
    assert mine != theirs
    worse, better = (old, new) if mine < theirs else (new, old)
    if better is new:
        api.model_promote(new.id, settings)
    held = run_cli("models", "promote", worse.id, env=fake.env)
    assert held.returncode == 3 and "held back" in held.stderr and held.stderr.count("\n") == 1
    assert api.model_show(better.id, settings)[1] is True
    api.model_promote(worse.id, settings, force=True)
    assert api.model_show(worse.id, settings)[1] is True


def test_a_changed_dataset_changes_the_keys_of_what_depends_on_it(tmp_path):
    import shutil

    import numpy as np

    from lamflow.workflows import api
    from lamflow.workflows.store.step_cache import cache_keys

    spec = yaml.safe_load(_spec(tmp_path).read_text())
    test_data = tmp_path / "gete-test"
    shutil.copytree(spec["datasets"]["gete-test"]["path"], test_data)
    spec["datasets"]["gete-test"]["path"] = str(test_data)
    path = tmp_path / "s.yaml"
    path.write_text(yaml.safe_dump(spec, sort_keys=False))
    before = cache_keys(api.validate(path)[1])
    energy = next(test_data.rglob("energy.npy"))
    np.save(energy, np.load(energy) + 1.0)
    after = cache_keys(api.validate(path)[1])
    assert {k for k in before if before[k] != after[k]} == {"test-finetune-gete-on-gete-test"}
    assert cache_keys(api.validate(path)[1], tools={"lamflow": "other"}) != after  # versions count too
