"""``lamflow`` command line: thin typer commands over :mod:`lamflow.workflows.api`.

Exit codes: 0 ok, 1 run failure, 2 bad input. Errors are one line on stderr (set LAMFLOW_DEBUG=1 for a
traceback).
"""

from __future__ import annotations

import gc
import json
import os
import sys
from enum import Enum
from pathlib import Path
from typing import Annotated

import typer

from lamflow.workflows.errors import (
    EXIT_BAD_INPUT,
    EXIT_GATE_FAILED,
    EXIT_RUN_FAILED,
    LamflowError,
    UsageError,
)

# The cyclic garbage collector's thresholds for this process. Start-up and validation leave about 100,000
# objects (typer, pydantic, dflow, the spec's models) that live as long as the process; with Python's
# defaults (700, 10, 10) the collector scanned them 257 times during a `lamflow validate` of
# examples/demo.yaml, two of them full scans: 0.13 s of its 1.1 s. A young generation of 50,000 objects
# and rarer older collections leave that to a handful of young scans; cyclic garbage is still collected.
GC_THRESHOLDS = (50_000, 20, 100)
gc.set_threshold(*GC_THRESHOLDS)

# the stages a spec can hold, for --help (written out: importing the stages would slow every command's
# start-up; tests/workflows/cli/test_cli.py checks it against workflows/stages)
STAGES = ("pretrain", "finetune", "active", "distill", "compress", "transfer", "test")

app = typer.Typer(
    name="lamflow",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    help="Run Large Atomic Model workflows with DeePMD-kit from a YAML spec, as a DAG on this machine or "
    f"on Argo Workflows. Stages: {', '.join(STAGES)}.",
)


def _version(value: bool) -> None:
    if value:
        from importlib.metadata import version

        typer.echo(f"lamflow {version('lamflow')}")
        raise typer.Exit()


@app.callback()
def _main(
    show_version: Annotated[
        bool,
        typer.Option("--version", callback=_version, is_eager=True, help="Print lamflow's version and exit."),
    ] = False,
) -> None:
    """Run Large Atomic Model workflows with DeePMD-kit from a YAML spec."""


class Output(str, Enum):
    text = "text"
    json = "json"


NO_GROUP_HELP = (
    "Run every short step (freeze, change-bias, test) in a process of its own instead of its step group's "
    "worker (same as LAMFLOW_GROUP=0; for debugging)."
)


def _settings(no_group: bool = False):
    from pydantic import ValidationError

    from lamflow.workflows.settings import Settings

    try:
        settings = Settings()
    except ValidationError as exc:
        first = exc.errors()[0]
        raise typer.BadParameter(f"LAMFLOW_{str(first['loc'][0]).upper()}: {first['msg']}") from None
    return settings.model_copy(update={"group": False}) if no_group else settings


@app.command()
def validate(spec: Annotated[Path, typer.Argument(help="Spec YAML file.")]) -> None:
    """Check a spec (schema, references, datasets on disk) and show the steps it compiles to."""
    from lamflow.workflows import api
    from lamflow.workflows.cli import render

    resolved, plan = api.validate(spec, _settings())
    render.notices(list(plan.notices))
    render.console().print(
        f"[green]ok[/green] {spec}: {len(resolved.spec.datasets)} datasets, "
        f"{len(plan.steps)} steps"
        + "".join(f" + loop {loop.key} ({len(loop.body)} steps per iteration)" for loop in plan.loops)
        + f", type_map {resolved.type_map}"
    )


@app.command()
def schema(
    output: Annotated[Path | None, typer.Option("--output", "-o", help="Write to a file.")] = None,
) -> None:
    """Print the JSON Schema of the spec format."""
    from lamflow.workflows.spec.schema import spec_schema_json

    text = spec_schema_json()
    if output is None:
        sys.stdout.write(text)
    else:
        output.write_text(text)


class Kind(str, Enum):
    workflow = "workflow"
    workflowtemplate = "workflowtemplate"
    cronworkflow = "cronworkflow"


@app.command("render")
def render_command(
    spec: Annotated[Path, typer.Argument(help="Spec YAML file.")],
    output_dir: Annotated[
        Path | None,
        typer.Option("--output", "-o", help="Write DIR/<spec name>.<kind>.yaml (default: stdout)."),
    ] = None,
    kind: Annotated[Kind, typer.Option(help="Argo document to write.")] = Kind.workflow,
    schedule: Annotated[
        str | None, typer.Option(help="Cron schedule of a cronworkflow, e.g. '0 3 * * 1' or @daily.")
    ] = None,
    timezone: Annotated[str, typer.Option(help="IANA time zone of the schedule.")] = "UTC",
    image: Annotated[str | None, typer.Option(help="Step image (default: LAMFLOW_IMAGE).")] = None,
    no_group: Annotated[bool, typer.Option("--no-group", help="One pod per step, no step groups.")] = False,
) -> None:
    """Write the spec as an Argo Workflow, WorkflowTemplate or CronWorkflow (no cluster needed)."""
    from lamflow.workflows import api
    from lamflow.workflows.argo.render import RenderOptions, to_yaml

    settings = _settings(no_group)
    if image:
        settings = settings.model_copy(update={"image": image})
    manifest = api.render(
        spec, settings, RenderOptions(kind=kind.value, schedule=schedule, timezone=timezone)
    )
    text = to_yaml(manifest)
    if output_dir is None:
        sys.stdout.write(text)
        return
    output_dir.mkdir(parents=True, exist_ok=True)
    metadata = manifest["metadata"]
    target = output_dir / f"{metadata.get('name') or metadata['generateName'].rstrip('-')}.{kind.value}.yaml"
    target.write_text(text)
    typer.echo(f"wrote {target}")


@app.command()
def submit(
    spec: Annotated[Path, typer.Argument(help="Spec YAML file.")],
    run_dir: Annotated[
        Path | None, typer.Option(help="Directory for this run (default: runs/<name>-<time>).")
    ] = None,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Validate and print the step DAG; run nothing.")
    ] = False,
    output: Annotated[Output, typer.Option("--output", help="Result format.")] = Output.text,
    engine: Annotated[
        str | None, typer.Option("--engine", help="Engine to run on (default LAMFLOW_ENGINE, else local).")
    ] = None,
    no_cache: Annotated[
        bool, typer.Option("--no-cache", help="Run every step, even those with a stored result.")
    ] = False,
    no_group: Annotated[bool, typer.Option("--no-group", help=NO_GROUP_HELP)] = False,
    wait: Annotated[
        bool,
        typer.Option(
            "--wait", help="--engine argo: follow the workflow to its end (exit 0/1 like a local run)."
        ),
    ] = False,
) -> None:
    """Run a spec (default engine: local, dflow debug mode); steps with stored results are reused."""
    from lamflow.workflows import api
    from lamflow.workflows.cli import render

    settings = _settings(no_group)
    if dry_run:
        _, plan = api.validate(spec, settings)
        if output is Output.json:
            sys.stdout.write(json.dumps(plan.record(), indent=2) + "\n")
        else:
            render.plan_tree(plan)
        return
    reporter = None if output is Output.json else render.progress_reporter()
    run_directory, summary = api.submit(
        spec,
        settings,
        run_dir,
        report=reporter,
        engine=engine,
        notify=render.notices,
        cache=False if no_cache else None,
        wait=wait,
    )
    if summary.argo is not None and summary.status not in ("Succeeded", "Failed"):
        if output is Output.json:
            sys.stdout.write(summary.model_dump_json(indent=2) + "\n")
        else:
            typer.echo(f"submitted {summary.argo.name} ({summary.argo.namespace}); {summary.argo.ui}")
            typer.echo(f"follow it with `lamflow watch {run_directory}` or `lamflow status {run_directory}`")
        return
    _finish(run_directory, summary, output)


def _finish(run_directory: Path, summary, output: Output) -> None:
    from lamflow.workflows.cli import render

    if output is Output.json:
        sys.stdout.write(summary.model_dump_json(indent=2) + "\n")
    else:
        render.run_result(run_directory, summary)
    if summary.status != "Succeeded":
        raise typer.Exit(EXIT_RUN_FAILED)
    if any(not g.passed for g in summary.gates):
        raise typer.Exit(EXIT_GATE_FAILED)


@app.command()
def resume(
    run: Annotated[str, typer.Argument(help="Run directory, or run id under runs/.")],
    output: Annotated[Output, typer.Option("--output", help="Result format.")] = Output.text,
    no_cache: Annotated[
        bool, typer.Option("--no-cache", help="Do not restore or store step results.")
    ] = False,
    no_group: Annotated[bool, typer.Option("--no-group", help=NO_GROUP_HELP)] = False,
) -> None:
    """Continue a failed or interrupted run in place: finished steps are kept, training continues from
    its latest checkpoint (dp --pt train --restart)."""
    from lamflow.workflows import api
    from lamflow.workflows.cli import render

    reporter = None if output is Output.json else render.progress_reporter()
    run_directory, summary = api.resume(run, _settings(no_group), reporter, cache=False if no_cache else None)
    _finish(run_directory, summary, output)


@app.command()
def status(
    run: Annotated[str, typer.Argument(help="Run directory, or run id under runs/.")],
    output: Annotated[Output, typer.Option("--output", help="Result format.")] = Output.text,
) -> None:
    """Show a run's steps, phases, timings and metrics (works while it runs)."""
    from lamflow.workflows import api
    from lamflow.workflows.cli import render

    run_directory, summary = api.status(run, _settings())
    if output is Output.json:
        sys.stdout.write(summary.model_dump_json(indent=2) + "\n")
    else:
        render.run_result(run_directory, summary)
    if summary.status == "Failed":
        raise typer.Exit(EXIT_RUN_FAILED)


@app.command()
def report(
    run: Annotated[str, typer.Argument(help="Run directory, or run id under runs/.")],
    out: Annotated[
        Path | None, typer.Option("--output", "-o", help="Folder to write (default <run-dir>/report).")
    ] = None,
) -> None:
    """Write a run's report: metrics.json/.csv, coverage.csv, PNG plots (learning curves, parity, training
    curves) and index.html, a self-contained page with all of them, the spec, versions and data digests."""
    from lamflow.workflows import api

    _, page, notices = api.report(run, _settings(), out)
    for notice in notices:
        typer.echo(f"notice: {notice}", err=True)
    typer.echo(f"report: {page}")


@app.command()
def watch(run: Annotated[str, typer.Argument(help="Run directory, or run id under runs/.")]) -> None:
    """Follow a running run (local or Argo) to its end, one line per step transition; exit 0/1."""
    from lamflow.workflows import api
    from lamflow.workflows.cli import render

    run_directory, summary = api.watch(run, _settings(), render.progress_reporter())
    _finish(run_directory, summary, Output.text)


@app.command()
def resubmit(run: Annotated[str, typer.Argument(help="Run directory, or run id under runs/.")]) -> None:
    """Run an Argo run again as a new workflow (Argo's resubmit); the run directory follows the new one."""
    from lamflow.workflows import api

    run_directory, summary = api.resubmit(run, _settings())
    assert summary.argo is not None
    typer.echo(f"resubmitted as {summary.argo.name} ({summary.argo.namespace}); {summary.argo.ui}")


@app.command()
def download(
    run: Annotated[str, typer.Argument(help="Run directory, or run id under runs/.")],
    step: Annotated[str | None, typer.Option("--step", help="Only this step's outputs.")] = None,
    output_dir: Annotated[
        Path | None, typer.Option("--output", "-o", help="Write here instead of the run directory.")
    ] = None,
) -> None:
    """Bring an Argo run's outputs (frozen models, checkpoints, metrics, logs) into the local run layout."""
    from lamflow.workflows import api

    run_directory, written = api.download(run, _settings(), step, output_dir)
    typer.echo(f"{len(written)} artifacts into {output_dir or run_directory}")


@app.command()
def logs(
    run: Annotated[str, typer.Argument(help="Run directory, or run id under runs/.")],
    step: Annotated[
        str | None, typer.Option("--step", help="One step's log (default: the whole run's).")
    ] = None,
) -> None:
    """Print a run's log (what DeePMD-kit printed), or one step's."""
    from lamflow.workflows import api

    sys.stdout.write(api.logs(run, _settings(), step))


@app.command()
def stop(run: Annotated[str, typer.Argument(help="Run directory, or run id under runs/.")]) -> None:
    """Stop a running run; its unfinished steps end as interrupted."""
    from lamflow.workflows import api

    run_directory = api.stop(run, _settings())
    print(f"stopping {run_directory}")


data_app = typer.Typer(no_args_is_help=True, help="Datasets: check them, move them to and from the store.")
app.add_typer(data_app, name="data")


@data_app.command("check")
def data_check(
    path: Annotated[
        list[str],
        typer.Argument(
            help="Dataset: a deepmd/npy folder or a deepmd/hdf5 file; or raw DFT outputs (files or globs) "
            "with --format vasp/outcar, qe/pw/scf, ..."
        ),
    ],
    fmt: Annotated[
        str,
        typer.Option(
            "--format",
            help="deepmd/npy, deepmd/hdf5, or a raw format dpdata reads (vasp/outcar, vasp/xml, qe/pw/scf, "
            "cp2k/output, abacus/md, abacus/scf, extxyz, deepmd/npy/mixed): converted into a temporary "
            "folder and checked.",
        ),
    ] = "deepmd/npy",
    max_files: Annotated[
        int | None, typer.Option("--max-files", help="Stop looking for systems past this many entries.")
    ] = None,
    max_depth: Annotated[
        int | None, typer.Option("--max-depth", help="... or this many folders deep.")
    ] = None,
    output: Annotated[Output, typer.Option("--output", help="Result format.")] = Output.text,
    properties: Annotated[
        list[str] | None,
        typer.Option(
            "--property",
            help="A per-frame property the sets hold, NAME:DIM (e.g. band_prop:3), checked as validate "
            "checks a declared property; with one, energies are optional. Repeatable.",
        ),
    ] = None,
) -> None:
    """Check every system of a dataset (arrays, shapes, finite values, types) and print a report; raw DFT
    outputs are checked as validate checks them (converted with dpdata first)."""
    from dataclasses import asdict

    from lamflow.workflows.cli.console import dataset_report  # these two alone: no dflow to import
    from lamflow.workflows.resolve.data_check import data_check as check

    declared: dict[str, int] = {}
    for item in properties or []:
        name, _, dim = item.partition(":")
        if not name or not dim.isdigit() or int(dim) < 1:
            raise UsageError(f"--property {item!r}: expected NAME:DIM, e.g. band_prop:3")
        declared[name] = int(dim)
    info, seconds = check(path, fmt, max_files, max_depth, declared)
    if output is Output.json:
        sys.stdout.write(json.dumps({**asdict(info), "seconds": round(seconds, 3)}, indent=2) + "\n")
    else:
        dataset_report(info, seconds)


@data_app.command("convert")
def data_convert(
    sources: Annotated[
        list[str], typer.Argument(help="DFT output files or glob patterns ('runs/*/OUTCAR').")
    ],
    fmt: Annotated[str, typer.Option("--fmt", help="dpdata format: vasp/outcar, vasp/xml, qe/pw/scf, ...")],
    output: Annotated[Path, typer.Option("-o", "--output-dir", help="New deepmd/npy dataset folder.")],
    type_map: Annotated[
        str | None, typer.Option("--type-map", help="Element order, comma-separated (default: as found).")
    ] = None,
    as_json: Annotated[Output, typer.Option("--output", help="Result format.")] = Output.text,
) -> None:
    """Convert raw DFT outputs to a deepmd/npy dataset with dpdata, checked as `data check` checks."""
    from dataclasses import asdict

    from lamflow.workflows import api
    from lamflow.workflows.cli import render

    names = [t.strip() for t in type_map.split(",") if t.strip()] if type_map else None
    result = api.data_convert(sources, fmt, output, names)
    if as_json is Output.json:
        sys.stdout.write(json.dumps(asdict(result), indent=2) + "\n")
    else:
        typer.echo(f"converted {len(result.sources)} file(s) ({fmt}) -> {result.output}, type map "
                   f"{list(result.type_map)}")  # fmt: skip
        render.dataset_report(result.info, 0.0)


@data_app.command("push")
def data_push(
    source: Annotated[Path, typer.Argument(help="Dataset folder (deepmd/npy).")],
    uri: Annotated[str, typer.Argument(help="Where: s3://bucket/prefix/name or a directory.")],
    output: Annotated[Output, typer.Option("--output", help="Result format.")] = Output.text,
) -> None:
    """Push a dataset to the store: manifest + content-addressed blobs; only missing blobs are sent."""
    from lamflow.workflows import api
    from lamflow.workflows.cli import render

    with render.transfer_progress("push", quiet=output is Output.json) as (progress, on_plan):
        result = api.data_push(source, uri, _settings(), progress, on_plan)
    _transfer_output(result, output, "pushed", "sent")


@data_app.command("pull")
def data_pull(
    uri: Annotated[str, typer.Argument(help="A pushed dataset: s3://bucket/prefix/name or a directory.")],
    dest: Annotated[Path, typer.Argument(help="New (or empty) folder to write it to.")],
    output: Annotated[Output, typer.Option("--output", help="Result format.")] = Output.text,
) -> None:
    """Pull a dataset from the store, verifying every file; the destination appears only when complete."""
    from lamflow.workflows import api
    from lamflow.workflows.cli import render

    with render.transfer_progress("pull", quiet=output is Output.json) as (progress, on_plan):
        result = api.data_pull(uri, dest, _settings(), progress, on_plan)
    _transfer_output(result, output, "pulled", "received")


def _transfer_output(result, output: Output, done: str, moved: str) -> None:
    """A push's or pull's result: one line, or JSON with ``bytes_sent`` / ``bytes_received``."""
    from lamflow.workflows.cli import render

    if output is Output.json:
        fields = {"uri": result.uri, "files": result.files, "bytes_total": result.bytes_total}
        sys.stdout.write(
            json.dumps({**fields, f"bytes_{moved}": result.bytes_moved, "digest": result.digest}) + "\n"
        )
    else:
        render.transfer_result(done, result, moved)


@data_app.command("ls")
def data_ls(
    uri: Annotated[
        str | None, typer.Argument(help="Where to look (default: the store, LAMFLOW_STORE).")
    ] = None,
    output: Annotated[Output, typer.Option("--output", help="Result format.")] = Output.text,
) -> None:
    """List the datasets pushed at or below a location."""
    from lamflow.workflows import api
    from lamflow.workflows.cli import render

    found = api.data_ls(uri, _settings())
    if output is Output.json:
        sys.stdout.write(json.dumps(found, indent=2) + "\n")
    else:
        render.dataset_listing(found)


models_app = typer.Typer(no_args_is_help=True, help="The model registry: frozen models with lineage.")
app.add_typer(models_app, name="models")


@models_app.command("list")
def models_list(
    channel: Annotated[
        str | None, typer.Option("--channel", help="Only this <spec>/<model> channel.")
    ] = None,
    output: Annotated[Output, typer.Option("--output", help="Result format.")] = Output.text,
) -> None:
    """List registered models (every frozen model of every run), champions marked."""
    from lamflow.workflows import api
    from lamflow.workflows.cli import render

    records, champions = api.models(_settings(), channel)
    if output is Output.json:
        rows = [{**r.model_dump(), "champion": champions.get(r.channel) == r.id} for r in records]
        sys.stdout.write(json.dumps(rows, indent=2) + "\n")
    else:
        render.model_listing(records, champions)


@models_app.command("show")
def models_show(model_id: Annotated[str, typer.Argument(help="Model id (or a unique prefix).")]) -> None:
    """Print a model's record: lineage (spec, datasets, parents, run), metrics, versions."""
    from lamflow.workflows import api

    record, champion = api.model_show(model_id, _settings())
    sys.stdout.write(json.dumps({**record.model_dump(), "champion": champion}, indent=2) + "\n")


@models_app.command("pull")
def models_pull(
    model_id: Annotated[str, typer.Argument(help="Model id (or a unique prefix).")],
    output: Annotated[
        Path | None, typer.Option("-o", "--output", help="File to write (default: ./<id>.pth).")
    ] = None,
) -> None:
    """Fetch a registered model file, verified against its SHA-256."""
    from lamflow.workflows import api

    settings = _settings()
    dest = output or Path(f"{api.model_show(model_id, settings)[0].id}.pth")
    record = api.model_pull(model_id, dest, settings)
    print(f"{record.id} -> {dest}")


@models_app.command("promote")
def models_promote(
    model_id: Annotated[str, typer.Argument(help="Model id (or a unique prefix).")],
    force: Annotated[bool, typer.Option("--force", help="Ignore the spec's promotion gate.")] = False,
) -> None:
    """Make a model the champion of its channel. Exit 3 when the spec's gate holds it back."""
    from lamflow.workflows import api

    record, previous = api.model_promote(model_id, _settings(), force)
    if previous == record.id:
        print(f"{record.id} is already the champion of {record.channel}")
    else:
        print(f"{record.id} is now the champion of {record.channel} (was {previous or 'none'})")


def main() -> None:
    """Console-script entry point: one-line errors, documented exit codes."""
    try:
        # standalone_mode=False returns typer.Exit's code instead of raising it
        code = app(standalone_mode=False)
        sys.exit(code if isinstance(code, int) else 0)
    except LamflowError as exc:
        print(f"lamflow: error: {exc}", file=sys.stderr)
        sys.exit(exc.exit_code)
    except typer.Exit as exc:
        sys.exit(exc.exit_code)
    except SystemExit:
        # typer meets a closed stdout (`lamflow logs RUN | head`) by wrapping it in click's
        # PacifyFlushWrapper and exiting 1: the reader left, nothing failed
        if type(sys.stdout).__name__ == "PacifyFlushWrapper":
            sys.exit(0)
        raise
    except (typer.Abort, KeyboardInterrupt):
        print("lamflow: interrupted", file=sys.stderr)
        sys.exit(130)
    except Exception as exc:  # usage errors (typer's vendored click) and anything unexpected
        if hasattr(exc, "show") and hasattr(exc, "exit_code"):
            exc.show()
            sys.exit(
                EXIT_BAD_INPUT if "UsageError" in {c.__name__ for c in type(exc).__mro__} else exc.exit_code
            )
        if os.environ.get("LAMFLOW_DEBUG"):
            raise
        print(
            f"lamflow: internal error: {type(exc).__name__}: {exc} (LAMFLOW_DEBUG=1 shows a traceback)",
            file=sys.stderr,
        )
        sys.exit(EXIT_RUN_FAILED)


if __name__ == "__main__":
    main()
