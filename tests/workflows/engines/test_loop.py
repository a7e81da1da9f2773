"""The concurrent-learning loop on the local engine (fake dp, fake DFT code): iterations decided at run
time with their steps keyed by iteration, two label steps sharing the picks, members continuing from their
own checkpoints, a labeler that fails on every pick failing its iteration with the counts while what
earlier iterations labelled is kept, resume in the iteration that failed, the per-iteration rows in
summary.json and `lamflow status`, and the step cache by run-time keys."""

from __future__ import annotations

from pathlib import Path

import yaml

from tests.conftest import FakeDp, run_cli
from tests.workflows.active_spec import active_spec, fake_dft_command
from tests.workflows.engines.test_cache import _phases, _summary


def _trainings(fake: FakeDp) -> int:
    return sum(1 for call in fake.calls() if call[:2] == ["--pt", "train"])


def _train_call(fake: FakeDp, step: str) -> list[str]:
    return next(r["argv"] for r in fake.records() if r["argv"][1] == "train" and f"/{step}/" in r["cwd"])


def test_a_loop_fails_in_iteration_two_resumes_there_and_is_cached(tmp_path):
    fake = FakeDp(tmp_path / "calls.jsonl")
    flag = tmp_path / "fail-labels"
    flag.touch()
    spec = active_spec()
    spec["stages"]["active"][0]["select"]["random_baseline"] = True
    spec["stages"]["active"][0]["init_from_previous"] = True
    spec["stages"]["active"][0]["label"]["parallel"] = 2
    spec["stages"]["active"][0]["label"]["command"]["command"] = fake_dft_command(
        f'case "$PWD" in *-i002-*) test -e {flag} && echo "SCF failed" && exit 3;; esac; '
    )  # iteration 2's DFT fails while the flag file is there
    file = tmp_path / "spec.yaml"
    file.write_text(yaml.safe_dump(spec))
    run_dir = tmp_path / "run"

    failed = run_cli("submit", str(file), "--run-dir", str(run_dir), env=fake.env)
    assert failed.returncode == 1, failed.stdout + failed.stderr
    phases = _phases(run_dir)
    assert all(phases[k] == "Succeeded" for k in phases if k.startswith("active-w-i001-"))
    assert "Failed" in (phases["active-w-i002-label-1"], phases["active-w-i002-label-2"])
    assert phases["test-active-w-on-water-valid"] == "Skipped"
    summary = _summary(run_dir)
    assert "none of 1 frames labelled (0 SCFs did not converge, 1 failed)" in summary["error"]
    first, second = summary["loops"]["active-w"]["iterations"]
    assert (first["explored"], first["picked"], first["labelled"], first["candidate_fraction"]) == (
        6,
        2,
        2,
        1.0,
    )
    assert first["decision"] == "iteration 1: accurate fraction 0.000 < 0.99"
    assert second["explored"] is None and not summary["loops"]["active-w"]["stopped"]
    assert _trainings(fake) == 7  # pretrain, two ensembles of two and two random baselines
    # iteration 1 fine-tunes the pretrained model; iteration 2 each member's own checkpoint of iteration 1
    for member in ("train-1", "train-2", "train-random"):
        first_call, second_call = (_train_call(fake, f"active-w-i00{i}-{member}") for i in (1, 2))
        assert "/steps/pretrain/" in first_call[first_call.index("--finetune") + 1]
        assert "--model-branch" not in second_call
        started_from = Path(second_call[second_call.index("--finetune") + 1])
        own = run_dir / summary["steps"][f"active-w-i001-{member}"]["outputs"]["checkpoint"]
        assert started_from.read_bytes() == own.read_bytes()

    flag.unlink()
    resumed = run_cli("resume", str(run_dir), env={**fake.env, "LAMFLOW_REPORT": "1"})
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    assert _trainings(fake) == 7  # iterations 1 and 2's trainings kept
    summary = _summary(run_dir)
    loop = summary["loops"]["active-w"]
    assert loop["stopped"] and not loop["converged"]
    assert loop["reason"] == "not converged: max_iterations (2) reached (accurate fraction 0.000 < 0.99)"
    assert [row["explored"] for row in loop["iterations"]] == [6, 10]  # MD grows: steps_by_iteration
    assert all(
        row["test_force_rmse"] is not None and row["seconds"]["training"] > 0 for row in loop["iterations"]
    )
    for row in loop["iterations"]:  # the engine's own time, never the wait between the failure and resume
        assert 0 <= row["seconds"]["orchestration"] < row["wall_s"] < 120
    assert len(summary["resumed_at"]) == 1
    assert set(_phases(run_dir).values()) == {"Succeeded"}
    first, second = loop["iterations"]
    assert first["random_test_force_rmse"] == first["test_force_rmse"]  # the same data in iteration 1
    assert second["random_test_force_rmse"] is not None and "random picks at equal budget" in loop["baseline"]
    assert summary["models"]["active.w"] == "models/active-w.pth"
    model = (run_dir / summary["models"]["active.w"]).resolve()
    assert "active-w-i002-train-1" in str(model)  # the last iteration's first model
    merged = run_dir / summary["steps"]["active-w-i002-merge"]["outputs"]["labelled"]
    assert loop["labelled"] == summary["steps"]["active-w-i002-merge"]["outputs"]["labelled"]
    assert sorted(p.name for p in Path(merged).iterdir()) == [
        "i001-s1-system-000", "i001-s2-system-000", "i002-s1-system-000", "i002-s2-system-000"
    ]  # fmt: skip
    status = run_cli("status", str(run_dir), env=fake.env)
    assert "Loop active-w: iterations" in status.stdout
    assert "not converged: max_iterations (2) reached" in status.stdout
    assert "active-w: no step ran during" in status.stdout
    page = (run_dir / summary["report"]).read_text()
    assert "Concurrent learning: active-w" in page and "random picks at equal budget" in page
    assert "Wall time: no step ran during" in page
    assert (run_dir / "report" / "loop-active-w.png").is_file()

    again = run_cli("submit", str(file), "--run-dir", str(tmp_path / "again"), env=fake.env)
    assert again.returncode == 0, again.stdout + again.stderr
    assert set(_phases(tmp_path / "again").values()) == {"Cached"} and _trainings(fake) == 7
    assert _summary(tmp_path / "again")["loops"]["active-w"]["reason"] == loop["reason"]


def test_a_student_ensemble_labelled_by_its_teacher_trains_from_scratch_then_continues(tmp_path):
    """Distillation inside the loop: students trained from scratch in iteration 1 (no checkpoint), each
    continuing its own checkpoint in iteration 2, on the frames the teacher (the pretrained model)
    labelled; the loop's model is the last iteration's first student."""
    fake = FakeDp(tmp_path / "calls.jsonl")
    spec = active_spec(
        student={"preset": "se_e2_a-tiny"},
        label={"teacher": {"model": "pretrain.water"}},
        init_from_previous=True,
    )
    file = tmp_path / "spec.yaml"
    file.write_text(yaml.safe_dump(spec))
    run_dir = tmp_path / "run"
    done = run_cli("submit", str(file), "--run-dir", str(run_dir), env=fake.env)
    assert done.returncode == 0, done.stdout + done.stderr
    assert _trainings(fake) == 5  # pretrain (the teacher), then two students in each of two iterations
    for member in ("train-1", "train-2"):
        first, second = (_train_call(fake, f"active-w-i00{i}-{member}") for i in (1, 2))
        assert first == ["--pt", "train", "input.json"]  # from scratch
        continued = Path(second[second.index("--finetune") + 1])
        own = run_dir / _summary(run_dir)["steps"][f"active-w-i001-{member}"]["outputs"]["checkpoint"]
        assert continued.read_bytes() == own.read_bytes()
    loop = _summary(run_dir)["loops"]["active-w"]
    assert [row["labelled"] for row in loop["iterations"]] == [2, 2]
    assert all(row["seconds"]["training"] > 0 for row in loop["iterations"])  # students train (op scratch)
    assert "active-w-i002-train-1" in str((run_dir / _summary(run_dir)["models"]["active.w"]).resolve())
