"""The report of a run (written at its end, and by ``lamflow report``): metrics JSON/CSV, coverage, PNG
plots with the expected series, one self-contained HTML page; and the transfer gates' exit code 4."""

from __future__ import annotations

import csv
import json

from lamflow.ops.evaluation.baseline import normalized
from lamflow.workflows.engines.summary import TestResult
from lamflow.workflows.errors import EXIT_GATE_FAILED
from lamflow.workflows.report.results import curve_points, flat, generalizability
from tests.conftest import run_cli
from tests.workflows.stages.test_transfer import transfer_spec

PNG = b"\x89PNG\r\n\x1a\n"
REPORT = {"LAMFLOW_REPORT": "1"}  # the fast tier turns it off elsewhere (tests/conftest.py)


def study(gate_max: float):
    """One model, 2 sizes x 2 repeats, scratch; and a plain test of a pretrain head."""
    spec = transfer_spec()
    spec["stages"].pop("finetune")
    spec["stages"]["test"] = [{"models": ["pretrain.molecules"], "datasets": ["gete-test"]}]
    spec["stages"]["transfer"][0]["models"] = ["pretrain.water"]
    spec["stages"]["transfer"][0]["gates"] = [
        {"model": "pretrain.water", "dataset": "gete", "metric": "normalized_error", "max": gate_max, "at": 8}
    ]
    return spec


def test_a_transfer_run_writes_its_report_and_a_failed_gate_exits_4(write_spec, fake_dp, tmp_path):
    spec_file = write_spec(study(gate_max=1e-6))
    done = run_cli("submit", str(spec_file), "--run-dir", str(tmp_path / "run"), env=REPORT | fake_dp.env)
    assert done.returncode == EXIT_GATE_FAILED, done.stdout + done.stderr
    assert "gate failed" in done.stdout and "normalized_error of pretrain.water on gete (8)" in done.stdout
    report = tmp_path / "run" / "report"
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert summary["status"] == "Succeeded" and summary["report"] == "report/index.html"
    assert [g["passed"] for g in summary["gates"]] == [False]
    # metrics: one row per test step, finite, with the dummy model's errors beside them
    rows = list(csv.DictReader((report / "metrics.csv").open()))
    assert len(rows) == 2 + 2 * 2 * 2 + 1  # zero-shot x2, (fine-tune + scratch) x 2 sizes x 2 repeats, test
    assert {r["protocol"] for r in rows} == {"unshifted", "zero-shot", "finetune", "scratch", "test"}
    for row in rows:
        assert float(row["force_rmse"]) > 0 and float(row["dummy_force_rmse"]) > 0
        assert 0 < float(row["normalized_error"]) <= 1
    metrics = json.loads((report / "metrics.json").read_text())
    assert {(p["protocol"], p["train_frames"], p["repeats"]) for p in metrics["learning_curves"]} == {
        (p, n, 2) for p in ("finetune", "scratch") for n in (2, 8)
    }
    assert metrics["datasets"]["gete@test"] == summary["datasets"]["gete@test"]
    # plots: valid PNGs, the learning curve with fine-tuned, scratch, zero-shot and dummy series
    figures = json.loads((report / "plots.json").read_text())
    for figure in figures:
        assert (report / figure["file"]).read_bytes()[:8] == PNG
    (curve,) = [f for f in figures if f["kind"] == "learning-curve"]
    assert curve["series"] == [
        "fine-tuned from pretrain.water",
        "from scratch",
        "zero-shot pretrain.water",
        "dummy (formula only)",
    ]
    parity = [f for f in figures if f["kind"] == "parity"]
    assert len(parity) == 5  # unshifted, zero-shot, the test stage's, largest fine-tune and scratch
    training = [f for f in figures if f["kind"] == "training-curve"]
    assert len(training) == 1 + 4 + 4  # pretrain, learning-curve fine-tunes, scratch
    # coverage: per-system zero-shot errors, worst first
    coverage = list(csv.DictReader((report / "coverage.csv").open()))
    zero_shot = [c for c in coverage if c["protocol"] == "zero-shot"]
    assert zero_shot and [c["rank"] for c in zero_shot] == [str(i + 1) for i in range(len(zero_shot))]
    forces = [float(c["force_rmse"]) for c in zero_shot]
    assert forces == sorted(forces, reverse=True)
    # the page embeds every plot and shows the spec
    page = (report / "index.html").read_text()
    assert page.count("data:image/png;base64,") == len(figures) and "src='report/" not in page
    assert "transfer:" not in page or "learning_curve" in page
    assert "Gates" in page and "FAIL" in page
    # where each training ran, from DeePMD-kit's start-up summary (the fake dp says CPU)
    assert summary["steps"]["pretrain"]["parameters"]["device"] == "CPU"
    assert "<h2>Training</h2>" in page and page.count("<td>CPU</td>") == 1 + 4 + 4

    # `lamflow report -o DIR` writes the same report elsewhere
    other = tmp_path / "elsewhere"
    done = run_cli("report", str(tmp_path / "run"), "-o", str(other), env=fake_dp.env)
    assert done.returncode == 0, done.stderr
    assert (other / "index.html").is_file() and (other / "metrics.csv").read_text() == (
        report / "metrics.csv"
    ).read_text()


def test_gates_pass_fail_and_report_a_missing_result():
    from lamflow.workflows.report.results import check_gates
    from lamflow.workflows.spec.transfer import GateSpec

    rows = [
        row("pretrain.a", "finetune", 4, 1, "x@test", 0.2, 0.5),
        row("pretrain.a", "finetune", 4, 2, "x@test", 0.4, 0.5),
    ]
    gate = {"model": "pretrain.a", "dataset": "x", "metric": "force_rmse", "at": 4}
    results = check_gates(
        [
            ("s", GateSpec(**gate, max=0.31)),
            ("s", GateSpec(**gate, max=0.29)),
            ("s", GateSpec(**{**gate, "at": "zero-shot"}, max=1.0)),
        ],
        rows,
        lambda n: f"{n}@test",
    )
    assert [r.passed for r in results] == [True, False, False]
    assert abs(results[0].value - 0.3) < 1e-12  # the mean over repeats
    assert results[2].value is None and results[2].line().endswith("no result")


def row(model, protocol, n, repeat, dataset, force, norm):
    return TestResult(
        step=f"s-{model}-{n}-{repeat}-{dataset}",
        model=model,
        dataset=dataset,
        protocol=protocol,
        study="s",
        train_frames=n,
        repeat=repeat,
        metrics={"force_rmse": force, "normalized_error": norm},
    )


def test_curve_points_average_repeats_and_generalizability_log_averages_datasets():
    rows = [
        row("pretrain.a", "finetune", 4, 1, "x", 0.2, 0.5),
        row("pretrain.a", "finetune", 4, 2, "x", 0.4, 0.5),
        row("pretrain.a", "finetune", 4, 1, "y", 0.1, 0.125),
        row("pretrain.a", "finetune", 4, 2, "y", 0.1, 0.125),
    ]
    (px, py) = curve_points(rows)
    assert (px.dataset, px.repeats) == ("x", 2) and abs(px.mean["force_rmse"] - 0.3) < 1e-12
    assert abs(px.std["force_rmse"] - 0.1414213562) < 1e-9 and py.std["force_rmse"] == 0.0
    (g,) = generalizability(rows)
    assert (
        g["datasets"] == ["x", "y"] and abs(g["normalized_error_log_average"] - 0.25) < 1e-12
    )  # sqrt(.5*.125)


def worse_row(**fields) -> TestResult:
    metrics = {"energy_rmse_per_atom": 0.05, "force_rmse": 1.2, "frames": 4.0}
    metrics |= {"dummy_energy_rmse_per_atom": 0.1, "dummy_force_rmse": 0.5}
    metrics |= normalized(metrics, metrics)  # the dummy figures sit in the same dict
    fields = {"step": "test-x", **fields}
    return TestResult(model="pretrain.water", dataset="gete-test", metrics=metrics, **fields)


def test_worse_than_the_dummy_and_untrained_elements_are_shown(tmp_path):
    from lamflow.workflows.cli.render import console, learning_curve_table, metrics_table
    from lamflow.workflows.engines.summary import RunSummary

    summary = RunSummary(
        run_id="r", spec="s.yaml", spec_sha256="0", status="Succeeded", engine="local", steps={}
    )
    summary.tests = [worse_row(unlearned=["Ge", "Te"])]
    summary.tests += [
        worse_row(protocol="finetune", study="s", train_frames=n, repeat=1, step=f"ft{n}") for n in (2, 6)
    ]
    out = console()
    with out.capture() as captured:
        out.print(metrics_table(summary))
        out.print(learning_curve_table(summary))
    text = captured.get()
    assert "✗" in text and "worse than the" in text and "F 2.40×" in text  # cells wrap
    assert "100.0/500.0" in text  # the dummy's own RMSEs, meV
    assert "untrained for" in text and "Ge, Te" in text
    assert "÷ dummy E" in text and "÷ dummy F" in text  # the learning curve shows E and F apart
    record = flat(summary.tests[0])
    assert record["ratio_force"] == 2.4 and record["normalized_force"] == 1.0
    assert record["worse_than_dummy"] == "force" and record["unlearned_elements"] == "Ge Te"


def test_a_log_axis_within_a_decade_has_numbers():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from lamflow.workflows.report.plots import _label_log_axis

    fig, ax = plt.subplots()
    ax.plot([1, 2], [20.0, 35.0])
    ax.set_yscale("log")
    _label_log_axis(ax.yaxis, ax.get_ylim())
    assert ax.yaxis.get_minor_formatter()(30.0, 0) == "30"
    plt.close(fig)
