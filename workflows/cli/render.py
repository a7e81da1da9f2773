"""Rich rendering for the CLI: the step DAG, live progress lines, run results and the metrics table."""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TextIO

from rich.console import Console
from rich.table import Table
from rich.tree import Tree

from lamflow.ops.evaluation.baseline import worse_than_dummy
from lamflow.ops.label import DROP_REASONS
from lamflow.workflows.cli.console import console, dataset_report  # noqa: F401 - the CLI's one place
from lamflow.workflows.compile.plan import Plan, StepPlan
from lamflow.workflows.engines.base import StepEvent
from lamflow.workflows.engines.machine import held_now
from lamflow.workflows.engines.summary import (
    LOOP_SECONDS,
    LOOP_SECONDS_HEADER,
    LoopRecord,
    RunSummary,
    Slot,
    StepRecord,
)

SYMBOL = {
    "Running": "[cyan]▶[/cyan]",
    "Succeeded": "[green]✓[/green]",
    "Cached": "[green]≡[/green]",
    "Failed": "[red]✗[/red]",
    "Pending": "·",
    "Skipped": "[dim]-[/dim]",
    "Interrupted": "[yellow]■[/yellow]",
}


def notices(lines: list[str]) -> None:
    """Things the user should know before running (on stderr, so --output json stays clean)."""
    err = Console(stderr=True, highlight=False)
    for line in lines:
        err.print(f"[yellow]notice:[/yellow] {line}", soft_wrap=True)


def plan_tree(plan: Plan) -> None:
    loops = f", {len(plan.loops)} loop{'s' if len(plan.loops) > 1 else ''}" if plan.loops else ""
    tree = Tree(f"[bold]{plan.name}[/bold]  ({len(plan.steps)} steps{loops})")
    at = {loop.position: loop for loop in plan.loops}
    for n in range(len(plan.steps) + 1):
        if n in at:
            loop = at[n]
            branch = tree.add(
                f"[bold]{loop.key}[/bold]  {loop.summary}  [dim]iterations decided at run time, each step "
                f"keyed {loop.key}-i<nnn>-<step>[/dim]"
            )
            for step in loop.body:
                branch.add(_step_line(step))
        if n < len(plan.steps):
            tree.add(_step_line(plan.steps[n]))
    console().print(tree)
    for name, keys in plan.groups.items():
        console().print(f"[dim]step group {name} (one worker process): {', '.join(keys)}[/dim]")


def _step_line(step: StepPlan) -> str:
    after = f"  [dim]after {', '.join(step.depends)}[/dim]" if step.depends else ""
    data = f"  [dim]data: {', '.join(step.datasets)}[/dim]" if step.datasets else ""
    return f"[bold]{step.key}[/bold]  {step.summary}{data}{after}"


def progress_reporter():
    """A reporter for the local engine: one line per step transition, on the real terminal."""
    consoles: dict[int, Console] = {}

    def report(event: StepEvent, terminal: TextIO) -> None:
        out = consoles.setdefault(id(terminal), console(terminal))
        took = f" ({event.duration_s:.1f} s)" if event.duration_s is not None else ""
        if event.phase == "Cached":
            took = "  [dim]cached: inputs unchanged, outputs restored from the store[/dim]"
        symbol = SYMBOL.get(event.phase, "?")
        line = f"[dim]{event.elapsed_s:7.1f}s[/dim] {symbol} [bold]{event.key}[/bold]{took}"
        if event.phase == "Running":
            line += f"  [dim]{event.summary}[/dim]"
        if event.error:
            line += f"\n          [red]{event.error}[/red]"
        for warning in event.warnings:
            line += f"\n          [yellow]⚠ {warning}[/yellow]"
        out.print(line)

    return report


def _fmt(value: float | None, scale: float = 1.0) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    return f"{value * scale:.1f}"


def metrics_table(summary: RunSummary) -> Table:
    with_virial = any("virial_rmse_per_atom" in t.metrics for t in summary.tests)
    columns = [
        "model",
        "dataset",
        "change-bias on",
        "E RMSE meV/atom",
        "E MAE meV/atom",
        "F RMSE meV/Å",
        "F MAE meV/Å",
    ]
    columns += ["V RMSE meV/atom", "V MAE meV/atom"] if with_virial else []
    with_dummy = any("normalized_force" in t.metrics for t in summary.tests)
    columns += ["dummy E/F RMSE", "÷ dummy E/F"] if with_dummy else []
    table = Table(
        title="Test errors (energy and virial per atom, force components)",
        caption="÷ dummy: RMSE over the RMSE of a model that knows only the chemical formula (per-element "
        "energies, zero forces), capped at 1 — 1 means no better than knowing nothing; where a model is "
        "worse, the uncapped ratio follows (✗ worse than the dummy). ⚠ untrained for: elements the "
        "model's training data never held"
        if with_dummy
        else None,
    )
    for column in [*columns, "frames"]:
        table.add_column(
            column,
            justify="right"
            if "meV" in column or column in ("frames", "÷ dummy E/F", "dummy E/F RMSE")
            else "left",
        )
    for test in summary.tests:
        if test.protocol in ("finetune", "scratch") or test.property:
            continue  # in the learning-curve or the property table
        m = test.metrics
        row = [
            test.model
            + (f" ({test.role})" if test.role else "")
            + (" (as it is)" if test.protocol == "unshifted" else ""),
            test.dataset
            + (" [yellow](overlaps training data)[/yellow]" if test.overlap else "")
            + (f" [yellow]⚠ untrained for {', '.join(test.unlearned)}[/yellow]" if test.unlearned else ""),
            test.change_bias_on or "-",
            _fmt(m.get("energy_rmse_per_atom"), 1000),
            _fmt(m.get("energy_mae_per_atom"), 1000),
            _fmt(m.get("force_rmse"), 1000),
            _fmt(m.get("force_mae"), 1000),
        ]
        if with_virial:
            row += [_fmt(m.get("virial_rmse_per_atom"), 1000), _fmt(m.get("virial_mae_per_atom"), 1000)]
        if with_dummy:
            de, df = m.get("dummy_energy_rmse_per_atom"), m.get("dummy_force_rmse")
            row.append("-" if de is None or df is None else f"{de * 1000:.1f}/{df * 1000:.1f}")
            row.append(dummy_ratio(m))
        table.add_row(*row, str(int(m["frames"])) if "frames" in m else "-")
    return table


def dummy_ratio(m: dict[str, float]) -> str:
    """'0.82/0.71'; a model worse than the dummy gets the uncapped ratios and a red mark."""
    ne, nf = m.get("normalized_energy"), m.get("normalized_force")
    if ne is None or nf is None:
        return "-"
    text = f"{ne:.2f}/{nf:.2f}"
    worse = worse_than_dummy(m)
    if worse:
        ratios = ", ".join(f"{q[0].upper()} {m[f'ratio_{q}']:.2f}×" for q in worse)
        text += f" [red]✗ worse than the dummy: {ratios}[/red]"
    return text


def learning_curve_table(summary: RunSummary) -> Table:
    """Transfer studies: errors vs training frames (mean ± spread over repeats), fine-tuned and scratch."""
    from lamflow.workflows.report.results import CurvePoint, curve_points

    points = curve_points(summary.tests)
    with_virial = any("virial_rmse_per_atom" in p.mean for p in points)
    table = Table(
        title="Learning curves (held-out frames; mean ± standard deviation over repeats)",
        caption="÷ dummy: each RMSE over the dummy model's, capped at 1; normalised: their weighted sum",
    )
    columns = ["study", "dataset", "model", "frames", "repeats", "E RMSE meV/atom", "F RMSE meV/Å"]
    columns += ["V RMSE meV/atom"] if with_virial else []
    columns += ["÷ dummy E", "÷ dummy F"] + (["÷ dummy V"] if with_virial else []) + ["normalised"]
    for column in columns:
        table.add_column(column, justify="left" if column in ("study", "dataset", "model") else "right")

    def cell(p: CurvePoint, metric: str, scale: float = 1000.0, digits: int = 1) -> str:
        if metric not in p.mean:
            return "-"
        spread = f" ± {p.std[metric] * scale:.{digits}f}" if p.repeats > 1 else ""
        return f"{p.mean[metric] * scale:.{digits}f}{spread}"

    for p in points:
        model = "from scratch" if p.protocol == "scratch" else f"fine-tuned {p.model}"
        row = [p.study, p.dataset, model, str(p.train_frames), str(p.repeats)]
        row += [cell(p, "energy_rmse_per_atom"), cell(p, "force_rmse")]
        row += [cell(p, "virial_rmse_per_atom")] if with_virial else []
        quantities = ("energy", "force", "virial") if with_virial else ("energy", "force")
        row += [cell(p, f"normalized_{q}", 1.0, 2) for q in quantities]
        table.add_row(*row, cell(p, "normalized_error", 1.0, 2))
    return table


def _components(metrics: dict[str, float], names: list[str], prefix: str) -> str:
    """'lumo 0.0118, homo 0.0153, ...' from ``<prefix><i>`` metrics."""
    return ", ".join(
        f"{n} {metrics[f'{prefix}{i}']:.4g}" for i, n in enumerate(names) if f"{prefix}{i}" in metrics
    )


def property_tests_table(summary: RunSummary) -> Table:
    """Property models' tests (test stage): RMSE per component next to the train-mean dummy's."""
    table = Table(
        title="Property tests (RMSE per component, the data's units)",
        caption="dummy: predicting the mean of the dataset's train part (or of the test frames when it is "
        "not split); normalised: each component's RMSE over the dummy's, capped at 1, averaged",
    )
    for column in ("model", "dataset", "property", "RMSE", "dummy RMSE", "normalised", "frames"):
        table.add_column(column, justify="right" if column in ("normalised", "frames") else "left")
    for test in summary.tests:
        if not test.property or test.protocol in ("finetune", "scratch"):
            continue
        m, names = test.metrics, test.components
        worse = [names[i] for i in range(len(names)) if m.get(f"ratio_property_{i}", 0.0) > 1.0]
        norm = m.get("normalized_property")
        cell = ("-" if norm is None else f"{norm:.2f}") + (
            f" [red]✗ {', '.join(worse)}[/red]" if worse else ""
        )
        table.add_row(
            test.model,
            test.dataset,
            test.property,
            _components(m, names, "property_rmse_"),
            _components(m, names, "dummy_property_rmse_"),
            cell,
            str(int(m["frames"])) if "frames" in m else "-",
        )
    return table


def property_curve_table(summary: RunSummary) -> Table:
    """Property studies: RMSE per component vs training frames, fine-tuned and scratch, next to the dummy
    that predicts the train mean."""
    from lamflow.workflows.report.results import curve_points

    points = [p for p in curve_points(summary.tests) if p.property]
    width = max(len(p.components) for p in points)
    table = Table(
        title="Property learning curves (held-out frames; RMSE per component, the data's units)",
        caption="dummy: predicting the train mean; normalised: each component's RMSE over the dummy's, "
        "capped at 1, averaged (1 = no better than knowing nothing; ✗ worse than the dummy)",
    )
    for column in ["study", "dataset", "property", "model", "frames", "repeats", "RMSE", "dummy RMSE",
                   "normalised"]:  # fmt: skip
        table.add_column(column, justify="right" if column in ("frames", "repeats", "normalised") else "left")
    for p in points:
        model = "from scratch" if p.protocol == "scratch" else f"fine-tuned {p.model}"
        names = list(p.components) + [f"[{i}]" for i in range(len(p.components), width)]
        rmse = ", ".join(
            f"{names[i]} {p.mean[f'property_rmse_{i}']:.4g}"
            + (f" ± {p.std[f'property_rmse_{i}']:.2g}" if p.repeats > 1 else "")
            for i in range(len(p.components))
            if f"property_rmse_{i}" in p.mean
        )
        dummy = ", ".join(
            f"{names[i]} {p.mean[f'dummy_property_rmse_{i}']:.4g}"
            for i in range(len(p.components))
            if f"dummy_property_rmse_{i}" in p.mean
        )
        worse = [names[i] for i in range(len(p.components)) if p.mean.get(f"ratio_property_{i}", 0.0) > 1.0]
        norm = p.mean.get("normalized_property")
        cell = "-" if norm is None else f"{norm:.2f}"
        cell += f" [red]✗ {', '.join(worse)}[/red]" if worse else ""
        table.add_row(p.study, p.dataset, p.property or "", model, str(p.train_frames), str(p.repeats), rmse,
                      dummy, cell)  # fmt: skip
    return table


def comparison_table(summary: RunSummary) -> Table:
    """Teacher, student and compressed student side by side: agreement with the teacher, speed, NVE."""
    table = Table(title="Distillation: vs teacher, speed (same frames and threads), NVE stability")
    columns = ["step", "role", "model", "E vs teacher meV/atom", "F vs teacher meV/Å", "µs/atom", "speed-up",
               "NVE drift meV/atom/ps", "NVE"]  # fmt: skip
    for column in columns:
        table.add_column(column, justify="left" if column in ("step", "role", "model", "NVE") else "right")
    for test in summary.tests:
        if test.role is None:
            continue
        m = test.metrics
        if "nve_stable" not in m:
            nve = "-"
        elif m.get("nve_exploded"):
            nve = f"[red]exploded ({int(m['nve_exploded'])}/{int(m.get('nve_runs', 0))})[/red]"
        else:
            nve = "stable" if m["nve_stable"] else "[yellow]drifts[/yellow]"
        speedup = m.get("speedup_vs_teacher")
        table.add_row(
            test.step,
            test.role,
            test.model,
            _fmt(m.get("energy_rmse_per_atom_vs_teacher"), 1000),
            _fmt(m.get("force_rmse_vs_teacher"), 1000),
            _fmt(m.get("us_per_atom")),
            "-" if speedup is None else f"{speedup:.2f}×",
            "-" if "nve_drift" not in m else f"{m['nve_drift'] * 1000:.3g}",
            nve,
        )
    return table


def _share(value: float | None) -> str:
    return "-" if value is None else f"{100 * value:.0f} %"


def loop_table(loop: LoopRecord) -> Table:
    """A loop's iterations: explored frames and their shares by trust level, picks, labels, the held-out
    force RMSE of the ensemble's first model and where the time went."""
    table = Table(title=f"Loop {loop.key}: iterations")
    columns = ("iteration", "explored", "accurate", "candidate", "failed", "picked", "labelled",
               "label failures", "test F RMSE meV/Å", "random picks: F RMSE",
               LOOP_SECONDS_HEADER)  # fmt: skip
    for column in columns:
        table.add_column(column, justify="left" if column == "iteration" else "right")
    for row in loop.iterations:
        t = row.seconds
        table.add_row(
            str(row.iteration),
            "-" if row.explored is None else str(row.explored),
            _share(row.accurate_fraction),
            _share(row.candidate_fraction),
            _share(row.failed_fraction),
            "-" if row.picked is None else str(row.picked),
            "-" if row.labelled is None else str(row.labelled),
            "-" if row.label_failures is None else str(row.label_failures),
            _fmt(row.test_force_rmse, 1000),
            _fmt(row.random_test_force_rmse, 1000),
            " / ".join(f"{t.get(k, 0):.0f}" for k in LOOP_SECONDS),
        )
    return table


def _held(record: StepRecord, live: dict[str, Slot]) -> str:
    """What a step runs on now (a running local step), or ran on."""
    if record.phase == "Running":
        return f"{live[record.key]} now" if record.key in live else "waiting for a slot"
    return "" if record.ran_on is None else str(record.ran_on)


def run_result(run_dir: Path, summary: RunSummary) -> None:
    out = console()
    steps = Table(title=f"Run {summary.run_id}: {summary.status}")
    grouped = any(r.group for r in summary.steps.values())
    live = held_now(run_dir) if summary.status in ("Pending", "Running") else {}
    held = bool(live) or any(r.ran_on for r in summary.steps.values())
    columns = ("step", "phase", "time s", *(("worker",) if grouped else ()), *(("on",) if held else ()))
    for column in columns:
        steps.add_column(column, justify="right" if column == "time s" else "left", no_wrap=column == "step")
    for record in summary.steps.values():
        row = [record.key, f"{SYMBOL.get(record.phase, '')} {record.phase}", _fmt(record.duration_s)]
        if grouped:
            row.append(record.group or "own process")
        if held:
            row.append(_held(record, live))
        steps.add_row(*row)
    out.print(steps)
    for loop in summary.loops.values():
        out.print(loop_table(loop))
        if loop.reason:
            mark = ("[green]✓[/green] " if loop.converged else "[yellow]✗[/yellow] ") if loop.stopped else ""
            out.print(f"{loop.key}: {mark}{loop.reason}")
        if loop.baseline:
            out.print(f"{loop.key}: {loop.baseline}")
        orchestration = loop.orchestration()
        if orchestration and loop.stopped:
            out.print(f"{loop.key}: {orchestration}")
        if loop.labelled:
            out.print(f"{loop.key}: every labelled frame (deepmd/npy): {run_dir / loop.labelled}")
    if any(t.protocol not in ("finetune", "scratch") and not t.property for t in summary.tests):
        out.print(metrics_table(summary))
    if any(t.property and t.protocol not in ("finetune", "scratch") for t in summary.tests):
        out.print(property_tests_table(summary))
    if any(t.protocol in ("finetune", "scratch") and not t.property for t in summary.tests):
        out.print(learning_curve_table(summary))
    if any(t.property for t in summary.tests):
        out.print(property_curve_table(summary))
    if any(t.role for t in summary.tests):
        out.print(comparison_table(summary))
    for record in summary.steps.values():  # distillation: what the selection kept and why it dropped frames
        report = record.parameters.get("report")
        if isinstance(report, dict) and "kept" in report and "dumped" in report:
            dropped = ", ".join(f"{k} {v}" for k, v in report.items() if k in DROP_REASONS and v)
            exploded = "; ".join(report.get("exploded_branches") or [])
            out.print(
                f"{record.key}: kept {report['kept']} of {report['dumped']} frames"
                + (f" (dropped: {dropped})" if dropped else "")
                + (f"; MD blew up: {exploded}" if exploded else "")
            )
    warned = [(r.key, w) for r in summary.steps.values() for w in r.warnings]
    if warned:
        out.print("[bold yellow]DeePMD-kit warnings[/bold yellow]")
        for key, warning in warned:
            out.print(f"  [yellow]⚠[/yellow] {key}: {warning}")
    if summary.models:
        out.print("[bold]Frozen models[/bold]")
        for ref, path in summary.models.items():
            out.print(f"  {ref:24s} {run_dir / path}")
    if summary.checkpoints:
        out.print("[bold]Training checkpoints[/bold] (for from.model_file)")
        for ref, path in summary.checkpoints.items():
            out.print(f"  {ref:24s} {run_dir / path}")
    for gate in summary.gates:
        mark = "[green]✓ gate[/green]" if gate.passed else "[red]✗ gate failed[/red]"
        out.print(f"{mark} {gate.line()}")
    if summary.report:
        out.print(f"Report: {run_dir / summary.report}")
    if summary.wall_time_s is not None:
        out.print(f"Wall time {summary.wall_time_s:.1f} s; run directory {run_dir}")
    if summary.error:
        out.print(f"[red]{summary.error}[/red]")


@contextmanager
def transfer_progress(
    verb: str, quiet: bool = False
) -> Iterator[tuple[Callable[[int], None] | None, Callable[[int], None] | None]]:
    """A byte progress bar on stderr for a push or pull: (progress, on_plan) callbacks."""
    err = Console(stderr=True)
    if quiet or not err.is_terminal:  # bars are for people watching; logs get the one-line result
        yield None, None
        return
    from rich.progress import (
        BarColumn,
        DownloadColumn,
        Progress,
        TextColumn,
        TimeRemainingColumn,
        TransferSpeedColumn,
    )

    bar = Progress(
        TextColumn(f"{verb}"),
        BarColumn(),
        DownloadColumn(),
        TransferSpeedColumn(),
        TimeRemainingColumn(),
        console=err,
        transient=True,
    )
    task = bar.add_task(verb, total=None)
    with bar:
        yield (lambda n: bar.advance(task, n)), (lambda total: bar.update(task, total=total))


def _bytes(n: int) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024  # type: ignore[assignment]
    return str(n)


def transfer_result(verb: str, result: Any, moved: str) -> None:
    console().print(
        f"[green]{verb}[/green] {result.uri}: {result.files} files, {_bytes(result.bytes_total)}; "
        f"{_bytes(result.bytes_moved)} {moved} ({result.blobs_moved} of {result.blobs_total} blobs); "
        f"digest {result.digest[:12]}"
    )


def dataset_listing(found: list[dict]) -> None:
    if not found:
        console().print("no datasets")
        return
    table = Table()
    for column in ("dataset", "files", "size", "digest"):
        table.add_column(column)
    for item in found:
        table.add_row(item["uri"], str(item["files"]), _bytes(item["bytes"]), item["digest"][:12])
    console().print(table)


def model_listing(records: list, champions: dict) -> None:
    if not records:
        console().print("no models registered")
        return
    table = Table(title="Model registry")
    for column in ("id", "channel", "created", "run", "gate metric", "champion"):
        table.add_column(column, no_wrap=column == "id")
    for r in records:
        gate = "-"
        if r.gate:
            value = r.metrics.get(r.gate["dataset"], {}).get(r.gate["metric"])
            gate = f"{r.gate['metric']} {value:.4g}" if value is not None else f"{r.gate['metric']} -"
        table.add_row(
            r.id, r.channel, r.created_at, r.run_id, gate, "★" if champions.get(r.channel) == r.id else ""
        )
    console().print(table)
