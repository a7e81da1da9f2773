"""``lamflow report RUN [-o DIR]`` (also written at the end of every local run): from a run directory's
``summary.json`` and its steps' outputs (``dp test`` detail files, ``lcurve.out``) write

- ``metrics.json`` and ``metrics.csv`` (one row per test), ``coverage.csv`` (per-system zero-shot errors);
- PNG plots: learning curves, parity plots, training curves (``plots.json`` lists them with their series);
- ``index.html``: one self-contained page embedding all of it with the spec, tool versions and data digests.

The folder is written next to the final one and renamed into place: a report is whole or absent."""

from __future__ import annotations

import base64
import csv
import html
import json
import os
import shutil
import tempfile
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path
from typing import Any

from lamflow.ops.runtime import files
from lamflow.workflows.engines.summary import (
    LOOP_SECONDS,
    LOOP_SECONDS_HEADER,
    LoopRecord,
    RunSummary,
    StepRecord,
    TestResult,
)
from lamflow.workflows.report import plots
from lamflow.workflows.report.detail import per_system_errors, read_blocks, read_detail
from lamflow.workflows.report.results import (
    COLUMNS,
    coverage,
    curve_points,
    flat,
    generalizability,
    protocol_of,
)

REPORT_DIR = "report"
PAGE = "index.html"
MAX_PARITY = 16
MAX_TRAINING = 24
ZERO_SHOT = ("zero-shot", "change-bias", "test", "unshifted")


def reads_output(summary: RunSummary) -> Callable[[str, str], bool]:
    """Which step outputs a report reads: tests' detail files and logs, and every training's lcurve.out
    (what `lamflow report` fetches of a remote run, instead of its models and checkpoints)."""
    tests = {row.step for row in summary.tests}

    def wanted(step: str, output: str) -> bool:
        return output == "lcurve" or (output in ("detail", "log") and step in tests)

    return wanted


def _output(run_dir: Path, summary: RunSummary, step: str, name: str) -> Path | None:
    record = summary.steps.get(step)
    if record is None or name not in record.outputs:
        return None
    path = files.resolve_output(run_dir / record.outputs[name])
    return path if path.exists() else None


def _detail(run_dir: Path, summary: RunSummary, row: TestResult) -> dict[str, Any]:
    folder = _output(run_dir, summary, row.step, "detail")
    return read_detail(folder) if folder is not None and folder.is_dir() else {}


def _property_rows(run_dir: Path, summary: RunSummary, row: TestResult) -> dict[str, Any]:
    """{system: label columns then prediction columns} of a property test (its ``property_all.out``)."""
    from lamflow.ops.test import ALL_PROPERTY_ROWS

    folder = _output(run_dir, summary, row.step, "detail")
    path = folder / f"{files.DETAIL_PREFIX}.{ALL_PROPERTY_ROWS}" if folder is not None else None
    return read_blocks(path) if path is not None and path.is_file() else {}


def _label(row: TestResult) -> str:
    protocol = protocol_of(row)
    if protocol in ("finetune", "scratch"):
        what = "fine-tuned from " + row.model if protocol == "finetune" else "from scratch"
        return f"{what}, {row.train_frames} frames (repeat {row.repeat}) on {row.dataset}"
    if protocol in ("zero-shot", "change-bias"):
        return f"{row.model}, bias re-fitted on {row.change_bias_on}, on {row.dataset}"
    return f"{row.model} ({protocol}) on {row.dataset}"


def _parity_rows(rows: list[TestResult]) -> list[TestResult]:
    """Plain tests and zero-shot results, and each learning curve's largest size (first repeat)."""
    chosen = [r for r in rows if protocol_of(r) in ZERO_SHOT or r.role]
    largest: dict[tuple[str, str, str, str], TestResult] = {}
    for r in rows:
        if r.protocol in ("finetune", "scratch") and r.repeat == 1:
            key = (r.study or "", r.dataset, r.model, r.protocol)
            if key not in largest or (r.train_frames or 0) > (largest[key].train_frames or 0):
                largest[key] = r
    return (chosen + list(largest.values()))[:MAX_PARITY]


def _trainings(summary: RunSummary) -> list[tuple[str, StepRecord]]:
    """The steps that ran ``dp train`` (those with an ``lcurve.out``), in plan order."""
    return [(key, record) for key, record in summary.steps.items() if "lcurve" in record.outputs]


def build(run_dir: Path, summary: RunSummary, out: Path) -> dict[str, Any]:
    """Write every report file into ``out`` (an empty folder); returns metrics.json's content."""
    rows = list(summary.tests)
    points = curve_points(rows)
    figures: list[plots.Figure] = []
    for study, dataset in sorted({(p.study, p.dataset) for p in points}):
        mine = [p for p in points if (p.study, p.dataset) == (study, dataset)]
        if any(p.property for p in mine):
            name = f"learning-curve-{study}-{dataset}.png".replace("@", "-")
            prop = mine[0].property
            title = f"{study}: {prop} learning curve on {dataset}"
            curve = plots.property_learning_curve(out, name, title, mine)
            figures += [curve] if curve is not None else []
            continue
        lines = [
            (f"zero-shot {r.model}", r.metrics)
            for r in rows
            if r.study == study and r.dataset == dataset and r.protocol == "zero-shot"
        ]
        dummy = next(
            (r.metrics for r in rows if r.dataset == dataset and "dummy_force_rmse" in r.metrics), None
        )
        if dummy is not None:
            lines.append(
                (
                    "dummy (formula only)",
                    {
                        "energy_rmse_per_atom": dummy.get("dummy_energy_rmse_per_atom", 0.0),
                        "force_rmse": dummy.get("dummy_force_rmse", 0.0),
                    },
                )
            )
        name = f"learning-curve-{study}-{dataset}.png".replace("@", "-")
        figures.append(plots.learning_curve(out, name, f"{study}: learning curve on {dataset}", mine, lines))
    coverage_rows: list[dict[str, Any]] = []
    for n, row in enumerate(_parity_rows(rows)):
        name = f"parity-{n:02d}-{row.step}.png"
        if row.property:
            blocks = _property_rows(run_dir, summary, row)
            figure = plots.property_parity(
                out, name, f"{row.property}: {_label(row)}", blocks, row.components
            )
            figures += [figure] if figure is not None else []
            continue
        detail = _detail(run_dir, summary, row)
        figure = plots.parity(out, name, _label(row), detail) if detail else None
        if figure is not None:
            figures.append(figure)
        log = _output(run_dir, summary, row.step, "log")
        if log is not None and log.is_file() and protocol_of(row) in ZERO_SHOT:
            per_system = per_system_errors(log.read_text(errors="replace"))
            for rank, entry in enumerate(coverage(per_system), 1):
                coverage_rows.append(
                    {
                        "step": row.step,
                        "model": row.model,
                        "protocol": protocol_of(row),
                        "dataset": row.dataset,
                        "rank": rank,
                        **entry,
                    }
                )
    for key, _ in _trainings(summary)[:MAX_TRAINING]:
        lcurve = _output(run_dir, summary, key, "lcurve")
        figure = (
            plots.training_curve(out, f"training-{key}.png", f"{key}: lcurve.out", lcurve) if lcurve else None
        )
        if figure is not None:
            figures.append(figure)
    for loop in summary.loops.values():
        figure = plots.loop_iterations(
            out, f"loop-{loop.key}.png", f"{loop.key}: iterations", loop.iterations
        )
        if figure is not None:
            figures.append(figure)
    flat_rows = [flat(r) for r in rows]
    metrics: dict[str, Any] = {
        "run_id": summary.run_id,
        "status": summary.status,
        "rows": flat_rows,
        "learning_curves": [asdict(p) for p in points],
        "generalizability": generalizability(rows),
        "coverage": coverage_rows,
        "gates": [g.model_dump() for g in summary.gates],
        "datasets": summary.datasets,
        "loops": {key: loop.model_dump() for key, loop in summary.loops.items()},
    }
    (out / "metrics.json").write_text(json.dumps(metrics, indent=1) + "\n")
    _csv(out / "metrics.csv", COLUMNS, flat_rows)
    cov_columns = (
        "step",
        "model",
        "protocol",
        "dataset",
        "rank",
        "system",
        "frames",
        "energy_rmse_per_atom",
        "force_rmse",
        "virial_rmse_per_atom",
    )
    _csv(out / "coverage.csv", cov_columns, coverage_rows)
    (out / "plots.json").write_text(json.dumps([asdict(f) for f in figures], indent=1) + "\n")
    (out / PAGE).write_text(_page(run_dir, summary, metrics, figures, out), encoding="utf-8")
    return metrics


def _csv(path: Path, columns: tuple[str, ...], rows: list[dict[str, Any]] | list[dict[str, object]]) -> None:
    with path.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(columns), extrasaction="ignore")
        writer.writeheader()
        writer.writerows(rows)


def write_report(run_dir: Path, summary: RunSummary, out: Path | None = None) -> Path:
    """Build the report into ``out`` (default ``<run_dir>/report``), replacing an older one; returns the
    page. Built in a sibling temporary folder first, so a failure leaves the old report as it was."""
    out = (out or run_dir / REPORT_DIR).resolve()
    out.parent.mkdir(parents=True, exist_ok=True)
    scratch = Path(tempfile.mkdtemp(prefix=f".{out.name}-", dir=out.parent))
    try:
        build(run_dir, summary, scratch)
        if out.exists():
            old = out.with_name(f".{out.name}-old-{os.getpid()}")
            os.replace(out, old)
            os.replace(scratch, out)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(scratch, out)
    except BaseException:
        shutil.rmtree(scratch, ignore_errors=True)
        raise
    return out / PAGE


# --- the page -------------------------------------------------------------------------------------------


def _fmt(value: Any, scale: float = 1.0, digits: int = 1) -> str:
    if isinstance(value, (int, float)) and value == value:
        return f"{value * scale:.{digits}f}"
    return "" if value in (None, "") else html.escape(str(value))


def _table(headers: list[str], body: list[list[str]]) -> str:
    head = "".join(f"<th>{html.escape(h)}</th>" for h in headers)
    rows = "".join("<tr>" + "".join(f"<td>{c}</td>" for c in row) + "</tr>" for row in body)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{rows}</tbody></table>"


def _worse(row: dict[str, Any]) -> str:
    """The uncapped ratios to the dummy (E/F[/V]), with a mark where a model is worse than it."""
    ratios = [
        row[f"ratio_{q}"] for q in ("energy", "force", "virial") if row.get(f"ratio_{q}") not in ("", None)
    ]

    text = "/".join(f"{r:.2f}" for r in ratios) or "–"
    worse = row.get("worse_than_dummy")
    return text + (f" ✗ worse: {html.escape(str(worse))}" if worse else "")


def _loop_section(loop: LoopRecord) -> list[str]:
    """A loop's iterations as a table, how it ended and how it did against random picks."""
    esc = html.escape
    body = [
        [
            str(r.iteration),
            _fmt(r.explored, digits=0),
            _fmt(r.accurate_fraction, 100, 0),
            _fmt(r.candidate_fraction, 100, 0),
            _fmt(r.failed_fraction, 100, 0),
            _fmt(r.picked, digits=0),
            _fmt(r.labelled, digits=0),
            _fmt(r.label_failures, digits=0),
            _fmt(r.test_force_rmse, 1000),
            _fmt(r.random_test_force_rmse, 1000),
            " / ".join(f"{r.seconds.get(k, 0.0):.0f}" for k in LOOP_SECONDS),
            esc(r.decision or ""),
        ]
        for r in loop.iterations
    ]
    if loop.stopped:
        ending = ("converged: " if loop.converged else "<b>not converged</b>: ") + esc(loop.reason or "")
    else:
        ending = "did not finish" + (f" ({esc(loop.reason)})" if loop.reason else "")
    parts = [
        f"<h2>Concurrent learning: {esc(loop.key)}</h2>",
        "<p>Per iteration: the explored frames by the ensemble's maximum force deviation (accurate below "
        "<i>lo</i>, failed at or above <i>hi</i>, in %), the frames picked and labelled, the held-out force "
        "RMSE (meV/Å) of the ensemble's first model and of a model trained on as many frames picked at "
        "random (where the loop ran that baseline), the summed step time (s) by kind, and the time during "
        "which no step ran (orch: the engine's own).</p>",
        _table(
            [
                "iteration",
                "explored",
                "accurate %",
                "candidate %",
                "failed %",
                "picked",
                "labelled",
                "label failures",
                "test F RMSE",
                "random picks",
                LOOP_SECONDS_HEADER,
                "decision",
            ],
            body,
        ),  # fmt: skip
        f"<p>{ending}</p>",
    ]
    if loop.baseline:
        parts.append(f"<p>{esc(loop.baseline)}</p>")
    orchestration = loop.orchestration()
    if orchestration:
        parts.append(f"<p>Wall time: {esc(orchestration)}.</p>")
    return parts


def _page(
    run_dir: Path, summary: RunSummary, metrics: dict[str, Any], figures: list[plots.Figure], out: Path
) -> str:
    from lamflow.workflows.store.step_cache import toolchain

    esc = html.escape
    parts = [
        f"<h1>lamflow run {esc(summary.run_id)}: {esc(summary.status)}</h1>",
        f"<p>spec {esc(summary.spec)} (sha256 {esc(summary.spec_sha256[:16])}…), "
        f"engine {esc(summary.engine)}, wall time {_fmt(summary.wall_time_s)} s</p>",
    ]
    if summary.gates:
        body = [
            [
                "<b style='color:#070'>pass</b>" if g.passed else "<b style='color:#b00'>FAIL</b>",
                esc(g.line()),
            ]
            for g in summary.gates
        ]
        parts += ["<h2>Gates</h2>", _table(["", "gate"], body)]
    for loop in summary.loops.values():
        parts += _loop_section(loop)
    parts.append(
        "<h2>Test errors</h2><p>Energy per atom and virial per atom in meV/atom, force components in "
        "meV/Å. <i>÷ dummy</i>: the RMSE over that of a model that knows only the chemical formula "
        "(per-element energies fitted on the train part, zero forces), capped at 1 — 1 means no better "
        "than knowing nothing; <i>normalised</i> combines energy and force (and virial) with LAMBench's "
        "fixed weights. <i>× dummy</i>: the uncapped ratio, shown with ✗ where a model is worse than the "
        "dummy. ⚠: the dataset holds elements the model's training data never held.</p>"
    )
    body = []
    for r in metrics["rows"]:
        if r["property"]:
            continue  # in the property table
        untrained = f" ⚠ untrained for {esc(str(r['unlearned_elements']))}" if r["unlearned_elements"] else ""
        body.append(
            [
                *_row_head(r, untrained),
                _fmt(r["energy_rmse_per_atom"], 1000),
                _fmt(r["force_rmse"], 1000),
                _fmt(r["virial_rmse_per_atom"], 1000),
                _fmt(r["dummy_energy_rmse_per_atom"], 1000),
                _fmt(r["dummy_force_rmse"], 1000),
                _fmt(r["normalized_energy"], digits=3),
                _fmt(r["normalized_force"], digits=3),
                _fmt(r["normalized_error"], digits=3),
                _worse(r),
                _fmt(r["frames"], digits=0),
            ]
        )
    parts.append(
        _table(
            [
                *ROW_HEAD,
                "E RMSE",
                "F RMSE",
                "V RMSE",
                "dummy E",
                "dummy F",
                "÷ dummy E",
                "÷ dummy F",
                "normalised",
                "× dummy (uncapped)",
                "frames",
            ],
            body,
        )
    )
    parts += _property_section(metrics["rows"])
    if metrics["generalizability"]:
        body = [
            [
                esc(g["model"]),
                esc(g["protocol"]),
                _fmt(g["train_frames"], digits=0),
                esc(", ".join(g["datasets"])),
                _fmt(g["normalized_error_log_average"], digits=3),
            ]
            for g in metrics["generalizability"]
        ]
        parts += [
            "<h2>Normalised error, log-averaged over datasets</h2>",
            _table(["model", "protocol", "N", "datasets", "log-average"], body),
        ]
    trainings = _trainings(summary)
    if trainings:
        body = [
            [
                esc(key),
                esc(str(record.parameters.get("device", "unknown"))),
                esc(str(record.ran_on) if record.ran_on is not None else "—"),
                _fmt(record.parameters.get("lcurve_last", {}).get("step"), digits=0),
                _fmt(record.duration_s),
                esc(record.phase),
            ]
            for key, record in trainings
        ]
        parts += [
            "<h2>Training</h2><p>Where each <code>dp train</code> ran (from DeePMD-kit's start-up summary), "
            "what the local engine gave the step (its GPUs and cores; — on Argo or from the cache) "
            "and the step's wall time in seconds (with the model's freezing, for a step that freezes).</p>",
            _table(["step", "device", "held", "last step", "wall time s", "phase"], body),
        ]
    for kind, heading in (
        ("loop", "Concurrent learning by iteration"),
        ("learning-curve", "Learning curves"),
        ("parity", "Parity plots"),
        ("training-curve", "Training curves"),
    ):
        chosen = [f for f in figures if f.kind == kind]
        if not chosen:
            continue
        parts.append(f"<h2>{heading}</h2>")
        for f in chosen:
            data = base64.b64encode((out / f.file).read_bytes()).decode()
            parts.append(
                f"<figure><img alt='{esc(f.title)}' src='data:image/png;base64,{data}'>"
                f"<figcaption>{esc(f.title)}</figcaption></figure>"
            )
    if metrics["coverage"]:
        body = [
            [
                esc(c["model"]),
                esc(c["protocol"]),
                esc(c["dataset"]),
                str(c["rank"]),
                esc(str(c["system"])),
                _fmt(c.get("energy_rmse_per_atom"), 1000),
                _fmt(c.get("force_rmse"), 1000),
                _fmt(c.get("frames"), digits=0),
            ]
            for c in metrics["coverage"]
        ]
        parts += [
            "<h2>Coverage: per-system errors, worst first</h2><p>Where the model already covers the data "
            "(low errors) and where it needs more (high errors).</p>",
            _table(["model", "protocol", "dataset", "rank", "system", "E RMSE", "F RMSE", "frames"], body),
        ]
    tools = toolchain()
    body = [[esc(k), esc(str(v))] for k, v in tools.items() if v]
    body += [[esc(f"dataset {k}"), esc(v)] for k, v in sorted(summary.datasets.items())]
    parts += ["<h2>Versions and data digests</h2>", _table(["", ""], body)]
    spec_file = run_dir / "spec.yaml"
    if spec_file.is_file():
        parts += ["<h2>Spec</h2>", f"<pre>{esc(spec_file.read_text(errors='replace'))}</pre>"]
    style = (
        "body{font-family:sans-serif;margin:2em;max-width:1200px}table{border-collapse:collapse;"
        "font-size:12px;margin:1em 0}td,th{border:1px solid #ccc;padding:2px 6px;text-align:right}"
        "th{background:#f3f3f3}img{max-width:100%}figure{margin:1em 0}pre{background:#f6f6f6;padding:1em}"
    )
    return (
        f"<!DOCTYPE html><html><head><meta charset='utf-8'><title>lamflow {esc(summary.run_id)}</title>"
        f"<style>{style}</style></head><body>{''.join(parts)}</body></html>\n"
    )


ROW_HEAD = ("study", "model", "protocol", "N", "repeat", "dataset")  # what every test row starts with


def _row_head(r: dict[str, Any], after_dataset: str = "") -> list[str]:
    """The cells of :data:`ROW_HEAD` for one row of metrics.json."""
    esc = html.escape
    return [
        esc(str(r["study"])),
        esc(str(r["model"])),
        esc(str(r["protocol"])),
        _fmt(r["train_frames"], digits=0),
        _fmt(r["repeat"], digits=0),
        esc(str(r["dataset"])) + after_dataset,
    ]


def _property_section(rows: list[dict[str, Any]]) -> list[str]:
    """The property tests: RMSE per component next to the dummy's (the train mean), normalised."""
    mine = [r for r in rows if r["property"]]
    if not mine:
        return []
    esc = html.escape
    body = []
    for r in mine:
        names = str(r["property_components"]).split()
        rmse = str(r["property_rmse_by_component"]).split()
        dummy = str(r["dummy_property_rmse_by_component"]).split()
        per = ", ".join(f"{n} {float(v):.4g}" for n, v in zip(names, rmse, strict=False))
        ref = ", ".join(f"{n} {float(v):.4g}" for n, v in zip(names, dummy, strict=False))
        worse = r.get("worse_than_dummy")
        body.append(
            [
                *_row_head(r),
                esc(str(r["property"])),
                esc(per),
                esc(ref),
                _fmt(r["normalized_property"], digits=3)
                + (f" ✗ worse than the dummy: {esc(str(worse))}" if worse else ""),
                _fmt(r["frames"], digits=0),
            ]
        )
    return [
        "<h2>Property test errors</h2><p>RMSE per component, in the data's units, on held-out frames. "
        "<i>dummy</i>: the RMSE of predicting the mean of the training frames; <i>normalised</i>: each "
        "component's RMSE over the dummy's, capped at 1, averaged over components — 1 means no better "
        "than knowing nothing (✗ marks components where the model is worse).</p>",
        _table([*ROW_HEAD, "property", "RMSE", "dummy RMSE", "normalised", "frames"], body),
    ]
