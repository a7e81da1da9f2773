"""Library entry points behind the CLI: validate, submit, status, logs, stop, render. Each is one call."""

from __future__ import annotations

import hashlib
import os
import re
from collections.abc import Callable
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any

from lamflow.workflows.argo.resources import check_cluster
from lamflow.workflows.compile.plan import Plan
from lamflow.workflows.engines import get_engine
from lamflow.workflows.engines.base import Reporter
from lamflow.workflows.engines.summary import RunSummary, initial_summary, read_summary
from lamflow.workflows.errors import UsageError
from lamflow.workflows.planner import build_plan, load_spec
from lamflow.workflows.resolve import ResolvedSpec
from lamflow.workflows.resolve.data_check import data_check  # noqa: F401 - part of this API
from lamflow.workflows.settings import Settings

if TYPE_CHECKING:
    from lamflow.workflows.argo.render import RenderOptions
    from lamflow.workflows.engines.argo import ArgoEngine

RUN_ID_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")


def validate(spec_file: str | Path, settings: Settings | None = None) -> tuple[ResolvedSpec, Plan]:
    """Load, validate and compile a spec, and check every training input with DeePMD-kit's own checker
    (raises SpecError); nothing is written but the dataset cache (datasets named by s3:// URI, the parts
    of split datasets)."""
    from lamflow.workflows.compile.deepmd_check import check_deepmd_inputs
    from lamflow.workflows.store.locate import fetch_dataset

    chosen = settings or Settings()
    resolved = load_spec(spec_file, lambda uri: fetch_dataset(uri, chosen), chosen.cache_dir / "splits")
    plan = build_plan(resolved)
    check_deepmd_inputs(plan, resolved.spec.model, resolved.type_map, resolved.source)
    if chosen.engine == "argo":  # what the cluster cannot give, before anything is uploaded
        check_cluster(resolved.spec.resources, ("default", "pretrain", "finetune"), chosen)
    return resolved, plan


def new_run_dir(settings: Settings, plan: Plan, run_dir: Path | None) -> Path:
    """Create the run directory: the one given (must not exist or be empty) or <run_root>/<name>-<time>."""
    if run_dir is not None:
        if not RUN_ID_PATTERN.match(run_dir.name):
            raise UsageError(
                f"--run-dir {run_dir}: the last path component must be a plain name (letters, digits, ._-)"
            )
        if run_dir.exists() and (not run_dir.is_dir() or any(run_dir.iterdir())):
            raise UsageError(
                f"--run-dir {run_dir}: already exists and is not empty (runs are never overwritten)"
            )
        run_dir.mkdir(parents=True, exist_ok=True)
        return run_dir
    stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
    settings.run_root.mkdir(parents=True, exist_ok=True)
    for n in range(1000):
        candidate = settings.run_root / (f"{plan.name}-{stamp}" + (f"-{n}" if n else ""))
        try:
            candidate.mkdir()
            return candidate
        except FileExistsError:
            continue
    raise UsageError(f"{settings.run_root}: cannot create a new run directory")


def _set_cache_keys(plan: Plan, summary: RunSummary):
    """Every step's cache key into the summary; returns the digests computed for them (reused later)."""
    from lamflow.workflows.store.step_cache import Digests, cache_keys

    digests = Digests()
    for key, cache_key in cache_keys(plan, digest=digests).items():
        summary.steps[key].cache_key = cache_key
    summary.datasets = {name: digests(path) for name, path in sorted(plan.dataset_paths.items())}
    return digests


def _as_run(plan: Plan, run_dir: Path) -> Plan:
    """The plan with its loops unrolled as far as the local run in ``run_dir`` got (no loops: itself)."""
    from lamflow.workflows.engines.loops import unrolled

    return unrolled(plan, run_dir)


def _step_cache(settings: Settings, use: bool | None):
    """The step cache in the configured store, checked before any work; None when turned off."""
    from lamflow.workflows.store.locate import store_backend
    from lamflow.workflows.store.step_cache import StepCache

    if not (settings.cache if use is None else use):
        return None
    backend = store_backend(settings)
    backend.check()
    return StepCache(backend)


def submit(
    spec_file: str | Path,
    settings: Settings,
    run_dir: Path | None = None,
    report: Reporter | None = None,
    engine: str | None = None,
    notify: Callable[[list[str]], None] | None = None,
    cache: bool | None = None,
    wait: bool = True,
) -> tuple[Path, RunSummary]:
    """Validate, then run the spec on the chosen engine. Bad input raises before anything is written.

    ``cache`` (default: ``settings.cache``) reuses stored results of steps with identical inputs;
    ``wait=False`` returns once a remote engine (Argo) has accepted the run."""
    runner = get_engine(engine or settings.engine, settings)
    resolved, plan = validate(spec_file, settings)
    check = getattr(runner, "check", None)
    if check is not None:
        check()  # engine settings (image, store, server) before a run directory is made
    step_cache = _step_cache(settings, cache)
    directory = new_run_dir(settings, plan, run_dir).resolve()
    spec_bytes = Path(spec_file).read_bytes()
    (directory / "spec.yaml").write_bytes(spec_bytes)  # the bytes that were hashed
    summary = initial_summary(
        plan, directory.name, str(spec_file), hashlib.sha256(spec_bytes).hexdigest(), runner.name
    )
    summary.spec_path = str(Path(spec_file).resolve())
    summary.notices = list(plan.notices)
    if notify is not None:
        notify(summary.notices)
    digests = _set_cache_keys(plan, summary)
    summary = runner.submit(plan, directory, summary, report, cache=step_cache, wait=wait)
    if (
        summary.argo is not None
    ):  # a remote run: its metrics came as output parameters, its models stay remote
        from lamflow.workflows.engines.outputs import test_results

        summary.tests = test_results(summary, plan)
        finish_run(resolved, directory, summary, settings)
        return directory, summary
    register_models(resolved, _as_run(plan, directory), directory, summary, settings, digests)
    finish_run(resolved, directory, summary, settings)
    return directory, summary


def resume(
    run: str | Path,
    settings: Settings,
    report: Reporter | None = None,
    cache: bool | None = None,
) -> tuple[Path, RunSummary]:
    """Continue a failed or interrupted run in place: finished steps are kept, training steps restart
    from their latest checkpoint. Refused (exit 2) if the run is running, succeeded, or its spec changed."""
    run_dir, summary = read_summary(run, settings.run_root)
    run_dir = run_dir.resolve()
    if summary.engine == "argo":
        raise UsageError(f"{run_dir}: an Argo run; run it again with `lamflow resubmit {run_dir}`")
    runner = get_engine(summary.engine, settings)
    if summary.status == "Succeeded":
        raise UsageError(f"{run_dir}: already succeeded; nothing to resume")
    if runner.running(run_dir):
        raise UsageError(f"{run_dir}: still running (stop it first with `lamflow stop`)")
    spec_file = Path(summary.spec_path or summary.spec)
    try:
        spec_bytes = spec_file.read_bytes()
    except OSError:
        raise UsageError(f"{run_dir}: its spec {spec_file} is gone; submit the spec as a new run") from None
    if hashlib.sha256(spec_bytes).hexdigest() != summary.spec_sha256:
        raise UsageError(
            f"{run_dir}: its spec {spec_file} changed since it was submitted; submit it as a new run "
            "(unchanged steps come from the step cache)"
        )
    resolved, plan = validate(spec_file, settings)
    plan_keys = list(
        dict.fromkeys([s.key for s in plan.steps] + [s.key for s in _as_run(plan, run_dir).steps])
    )
    if set(plan_keys) != set(summary.steps):
        raise UsageError(f"{run_dir}: the spec now compiles to other steps ({', '.join(plan_keys)})")
    step_cache = _step_cache(settings, cache)
    summary.attempts += 1
    summary.resumed_at.append(datetime.now(timezone.utc).isoformat(timespec="milliseconds"))
    digests = _set_cache_keys(plan, summary)
    summary = runner.submit(plan, run_dir, summary, report, cache=step_cache, resume=True)
    register_models(resolved, _as_run(plan, run_dir), run_dir, summary, settings, digests)
    finish_run(resolved, run_dir, summary, settings)
    return run_dir, summary


def finish_run(resolved: ResolvedSpec, run_dir: Path, summary: RunSummary, settings: Settings) -> None:
    """At the end of a run (whatever its status): the transfer studies' gates, and the report (unless
    ``settings.report`` is off). A report that cannot be written is a notice, not a failed run."""
    from lamflow.workflows.report.build import write_report
    from lamflow.workflows.report.results import check_gates

    if summary.status in ("Succeeded", "Failed"):
        gates = [(t.name, g) for t in resolved.spec.stages.section("transfer") or [] for g in t.gates]
        summary.gates = check_gates(gates, summary.tests, lambda n: resolved.part(n, "test"))
    if summary.status in ("Succeeded", "Failed") and settings.report:
        if summary.argo is not None:
            fetched = fetch_report_outputs(run_dir, summary, settings)
            for key, record in fetched.steps.items():
                if key in summary.steps:
                    summary.steps[key].outputs.update(record.outputs)
        try:
            page = write_report(run_dir, summary)
            summary.report = os.path.relpath(page, run_dir)
        except Exception as exc:  # noqa: BLE001 - the run's results stand without their report
            summary.notices.append(f"report not written: {type(exc).__name__}: {exc}")
    summary.write(run_dir)


def fetch_report_outputs(run_dir: Path, summary: RunSummary, settings: Settings) -> RunSummary:
    """An Argo run's outputs that its report reads (test details and logs, lcurve.out), downloaded into
    the run directory unless already there; returns the summary as written after. A store that cannot be
    reached is a notice: the report then has the metrics without parity and training curves."""
    from lamflow.workflows.errors import LamflowError
    from lamflow.workflows.report.build import reads_output

    drawn = reads_output(summary)

    def wanted(step: str, output: str) -> bool:  # not those fetched before (by this or `lamflow download`)
        record = summary.steps.get(step)
        here = record is not None and output in record.outputs and (run_dir / record.outputs[output]).exists()
        return drawn(step, output) and not here

    try:
        _, engine = _argo_run(run_dir, settings, "")
        engine.download(run_dir, wanted=wanted)
    except LamflowError as exc:
        summary.notices.append(f"report without parity and training curves: outputs not fetched ({exc})")
        return summary
    return read_summary(run_dir, settings.run_root)[1]


def report(run: str | Path, settings: Settings, out: Path | None = None) -> tuple[Path, Path, list[str]]:
    """(run directory, report page, notices) of ``lamflow report RUN [-o DIR]``; an Argo run's outputs that
    the report reads are fetched first."""
    from lamflow.workflows.report.build import write_report

    run_dir, summary = read_summary(run, settings.run_root)
    known = len(summary.notices)
    if summary.argo is not None:
        summary = fetch_report_outputs(run_dir, summary, settings)
    return run_dir, write_report(run_dir, summary, out), summary.notices[known:]


def register_models(
    resolved: ResolvedSpec, plan: Plan, run_dir: Path, summary: RunSummary, settings: Settings, digests
) -> list[str]:
    """Record every frozen model of a finished run in the store's registry; returns the new ids.

    ``digests`` (a step_cache.Digests) already knows the datasets' digests from the cache keys."""
    from lamflow.workflows.errors import LamflowError
    from lamflow.workflows.store.registry import run_records

    gate = resolved.spec.registry.promote_gate
    gated = None
    if gate is not None:  # a split dataset is tested on its test part
        gated = {
            **gate.model_dump(),
            "dataset": resolved.part(gate.dataset, "test"),
        }
    registry = _registry(settings)
    added = []
    try:
        for record, model_file in run_records(plan, run_dir, summary, gated, digests):
            if registry.register(record, model_file):
                added.append(record.id)
    except LamflowError as exc:
        summary.notices.append(f"models not recorded in the registry: {exc}")
    summary.registered = added
    summary.write(run_dir)
    return added


def status(run: str | Path, settings: Settings) -> tuple[Path, RunSummary]:
    """The run's summary, brought up to date by its engine (an Argo run asks the server)."""
    run_dir, summary = read_summary(run, settings.run_root)
    return run_dir, get_engine(summary.engine, settings).status(run_dir)


def logs(run: str | Path, settings: Settings, step: str | None = None) -> str:
    run_dir, summary = read_summary(run, settings.run_root)
    return get_engine(summary.engine, settings).logs(run_dir, step)


def stop(run: str | Path, settings: Settings) -> Path:
    run_dir, summary = read_summary(run, settings.run_root)
    get_engine(summary.engine, settings).stop(run_dir)
    return run_dir


def watch(run: str | Path, settings: Settings, report: Reporter) -> tuple[Path, RunSummary]:
    """Follow a run (local or Argo) until it ends, reporting each step transition as it is seen."""
    import time

    from lamflow.workflows.engines.base import report_transitions

    run_dir, summary = read_summary(run, settings.run_root)
    engine = get_engine(summary.engine, settings)
    seen = {key: "Pending" for key in summary.steps}
    started = time.monotonic()

    def update() -> RunSummary:
        current = engine.status(run_dir)
        report_transitions(current, seen, started, report)
        return current

    while True:
        summary = update()
        if summary.status in ("Succeeded", "Failed"):
            return run_dir, summary
        if not engine.running(run_dir):  # ended between the two reads: one last look
            return run_dir, update()
        time.sleep(settings.argo_poll_s if summary.engine == "argo" else 0.5)


def _argo_run(run: str | Path, settings: Settings, otherwise: str) -> tuple[Path, ArgoEngine]:
    """A run of the Argo engine and that engine; any other run is refused with ``otherwise``."""
    from lamflow.workflows.engines.argo import ArgoEngine

    run_dir, summary = read_summary(run, settings.run_root)
    engine = get_engine(summary.engine, settings)
    if not isinstance(engine, ArgoEngine):
        raise UsageError(f"{run_dir}: a {summary.engine} run; {otherwise}")
    return run_dir, engine


def download(
    run: str | Path, settings: Settings, step: str | None = None, out_dir: Path | None = None
) -> tuple[Path, list[Path]]:
    """A remote run's outputs into the local run layout; into the run directory, its frozen models are
    also linked under models/ and recorded in the model registry, as a local run's are."""
    from lamflow.workflows.engines.outputs import link_models

    run_dir, engine = _argo_run(run, settings, "its outputs are already in the run directory")
    written = engine.download(run_dir, step, out_dir)
    if out_dir is None or out_dir.resolve() == run_dir.resolve():
        summary = read_summary(run_dir, settings.run_root)[1]
        resolved, plan = validate(Path(summary.spec_path or summary.spec), settings)
        link_models(run_dir, summary, plan)
        summary.write(run_dir)
        if summary.status == "Succeeded":
            register_models(resolved, plan, run_dir, summary, settings, _set_cache_keys(plan, summary))
    return run_dir, written


def resubmit(run: str | Path, settings: Settings) -> tuple[Path, RunSummary]:
    """An Argo run again, as a new workflow (``lamflow resume`` continues a local run instead)."""
    run_dir, engine = _argo_run(run, settings, "continue it with `lamflow resume`")
    return run_dir, engine.resubmit(run_dir)


def wait(run: str | Path, settings: Settings, timeout_s: float | None = None) -> tuple[Path, RunSummary]:
    run_dir, summary = read_summary(run, settings.run_root)
    return run_dir, get_engine(summary.engine, settings).wait(run_dir, timeout_s)


def render(spec_file: str | Path, settings: Settings, options: RenderOptions | None = None) -> dict[str, Any]:
    """The spec as an Argo manifest (see :mod:`lamflow.workflows.argo.render`); pure, no network."""
    from lamflow.workflows.argo.render import SpecIdentity
    from lamflow.workflows.argo.render import render as render_manifest

    resolved, plan = validate(spec_file, settings)
    identity = SpecIdentity(
        name=resolved.spec.name,
        description=resolved.spec.description,
        sha256=hashlib.sha256(Path(spec_file).read_bytes()).hexdigest(),
    )
    return render_manifest(plan, resolved.spec.resources, settings, identity, options)


def data_convert(sources: list[str], fmt: str, output: str | Path, type_map: list[str] | None = None):
    """Raw DFT outputs (paths or globs) -> a checked deepmd/npy dataset at ``output`` (dpdata reads them)."""
    from lamflow.ops import convert
    from lamflow.ops.data import datasets

    try:
        return convert.convert(sources, fmt, output, type_map)
    except datasets.DatasetError as exc:
        raise UsageError(str(exc)) from None


def data_push(
    source: str | Path,
    uri: str,
    settings: Settings,
    progress: Callable[[int], None] | None = None,
    on_plan: Callable[[int], None] | None = None,
):
    """Store a dataset folder at ``uri`` (a directory or s3://); sends only the blobs the store lacks."""
    from lamflow.workflows.store import trees
    from lamflow.workflows.store.locate import locate

    backend, name = locate(uri, settings)
    return trees.push(Path(source), backend, name, progress, on_plan, extra={"kind": "dataset"})


def data_pull(
    uri: str,
    dest: str | Path,
    settings: Settings,
    progress: Callable[[int], None] | None = None,
    on_plan: Callable[[int], None] | None = None,
):
    """Fetch a pushed dataset into ``dest`` (new or empty), every file verified against its digest."""
    from lamflow.workflows.store import trees
    from lamflow.workflows.store.locate import locate

    backend, name = locate(uri, settings)
    backend.check()
    manifest = trees.read_manifest(backend, name)
    if on_plan is not None:
        on_plan(sum(b["size"] for b in manifest["blobs"].values()))
    return trees.pull(backend, Path(dest), name, progress, manifest)


def data_ls(uri: str | None, settings: Settings) -> list[dict]:
    """The datasets pushed at or below ``uri`` (default: the store): uri, digest, files, bytes."""
    from lamflow.workflows.store import trees
    from lamflow.workflows.store.locate import locate

    backend, name = locate(uri or settings.store, settings)
    found = []
    for tree, manifest in trees.list_trees(backend, name):
        if manifest.get("kind") != "dataset":
            continue  # step results and models are listed by their own commands
        found.append(
            {
                "uri": backend.child(tree),
                "digest": manifest["digest"],
                "files": len(manifest["files"]),
                "bytes": sum(f["size"] for f in manifest["files"]),
            }
        )
    return found


def _registry(settings: Settings):
    from lamflow.workflows.store.locate import store_backend
    from lamflow.workflows.store.registry import Registry

    return Registry(store_backend(settings))


def models(settings: Settings, channel: str | None = None):
    """The registry's model records (oldest first per channel) and each channel's champion id."""
    registry = _registry(settings)
    registry.backend.check()
    records = registry.models(channel)
    champions = {c: registry.champion(c) for c in {r.channel for r in records}}
    return records, champions


def model_show(model_id: str, settings: Settings):
    registry = _registry(settings)
    record = registry.get(model_id)
    return record, registry.champion(record.channel) == record.id


def model_pull(model_id: str, dest: Path, settings: Settings):
    return _registry(settings).pull(model_id, dest)


def model_promote(model_id: str, settings: Settings, force: bool = False):
    """Make a model its channel's champion, if the spec's gate lets it (else HeldBack, exit 3)."""
    return _registry(settings).promote(model_id, force)
