"""Local engine: runs a compiled workflow with dflow's debug mode (steps are local subprocesses).

Layout of a run directory::

    <run-dir>/spec.yaml       the spec as submitted
    <run-dir>/plan.json       the step plan (keys, ops, parameters, dependencies)
    <run-dir>/summary.json    phases, timings, outputs, metrics — updated while the run progresses
    <run-dir>/metrics.json    test results (model x dataset -> errors)
    <run-dir>/engine.log      everything the steps printed (DeePMD-kit logs included)
    <run-dir>/models/         links to every frozen model (<stage>-<name>.pth)
    <run-dir>/steps/<key>/    dflow's step directories (inputs/, outputs/, workdir/, log.txt)
"""

from __future__ import annotations

import json
import os
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TextIO

from lamflow.workflows.compile.dflow_workflow import StepRuntime, build_workflow, staging_requests
from lamflow.workflows.compile.plan import Plan, StepOutput, model_slug
from lamflow.workflows.dflow_config import dflow_config, local_debug_config
from lamflow.workflows.engines.summary import RunSummary, StepRecord, TestResult, now
from lamflow.workflows.settings import Settings

STEPS_DIR = "steps"  # dflow's workflow id, hence the folder of step directories
POLL_S = 0.5


@dataclass(frozen=True)
class StepEvent:
    key: str
    phase: str
    elapsed_s: float  # since the run started
    duration_s: float | None
    summary: str
    error: str | None = None


Reporter = Callable[[StepEvent, TextIO], None]


def _read(path: Path) -> str | None:
    try:
        return path.read_text()
    except OSError:
        return None


def _step_error(step_dir: Path) -> str:
    """The most telling line of a failed step's log (the op's error message, else the last line)."""
    text = _read(step_dir / "log.txt") or ""
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    for line in reversed(lines):
        for marker in ("FatalError:", "TransientError:", "Error:", "Exception:"):
            if marker in line:
                return line[line.index(marker) + len(marker) :].strip() or line
    return lines[-1] if lines else "step failed (no output)"


class _Watcher(threading.Thread):
    """Polls dflow's step phase files; records timings in the summary and reports transitions."""

    def __init__(self, run_dir: Path, summary: RunSummary, report: Callable[[StepEvent], None]) -> None:
        super().__init__(daemon=True)
        self.run_dir = run_dir
        self.summary = summary
        self.report = report
        self.stop_event = threading.Event()
        self.started = time.monotonic()
        self.started_mono: dict[str, float] = {}
        self.lock = threading.Lock()

    def poll(self) -> None:
        with self.lock:
            changed = False
            for key, record in self.summary.steps.items():
                phase = _read(self.run_dir / STEPS_DIR / key / "phase")
                if phase not in ("Running", "Succeeded", "Failed") or phase == record.phase:
                    continue
                t = time.monotonic()
                if record.phase == "Pending":
                    record.started_at = now()
                    self.started_mono[key] = t
                    if phase != "Running":  # finished between two polls
                        self._emit(key, "Running", None)
                record.phase = phase  # type: ignore[assignment]
                duration = None
                if phase in ("Succeeded", "Failed"):
                    record.finished_at = now()
                    duration = round(t - self.started_mono.get(key, t), 1)
                    record.duration_s = duration
                    if phase == "Failed":
                        record.error = _step_error(self.run_dir / STEPS_DIR / key)
                self._emit(key, phase, duration)
                changed = True
            if changed:
                self.summary.write(self.run_dir)

    def _emit(self, key: str, phase: str, duration: float | None) -> None:
        record = self.summary.steps[key]
        self.report(
            StepEvent(
                key, phase, round(time.monotonic() - self.started, 1), duration, record.summary, record.error
            )
        )

    def run(self) -> None:
        while not self.stop_event.wait(POLL_S):
            self.poll()


class _CapturedOutput:
    """Sends fd 1/2 (what the steps print) to a log file; ``terminal`` still writes to the real stdout."""

    def __init__(self, log_path: Path) -> None:
        self.log_path = log_path

    def __enter__(self) -> TextIO:
        sys.stdout.flush()
        sys.stderr.flush()
        self.saved = os.dup(1), os.dup(2)
        self.terminal = os.fdopen(os.dup(1), "w", buffering=1, encoding="utf-8")
        self.log_fd = os.open(self.log_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
        os.dup2(self.log_fd, 1)
        os.dup2(self.log_fd, 2)
        return self.terminal

    def __exit__(self, *exc: object) -> None:
        sys.stdout.flush()
        sys.stderr.flush()
        os.dup2(self.saved[0], 1)
        os.dup2(self.saved[1], 2)
        for fd in (*self.saved, self.log_fd):
            os.close(fd)
        self.terminal.close()


def plan_record(plan: Plan) -> dict:
    return {
        "name": plan.name,
        "steps": [
            {
                "key": s.key,
                "op": s.op,
                "summary": s.summary,
                "depends": s.depends,
                "datasets": list(s.datasets),
                "artifacts": {
                    k: (asdict(v) if isinstance(v, StepOutput) else {"file": str(v.path)})
                    for k, v in s.artifacts.items()
                },
                "parameters": s.parameters,
            }
            for s in plan.steps
        ],
    }


def initial_summary(plan: Plan, run_id: str, spec_file: str, spec_sha256: str) -> RunSummary:
    return RunSummary(
        run_id=run_id,
        spec=spec_file,
        spec_sha256=spec_sha256,
        engine="local",
        steps={
            s.key: StepRecord(key=s.key, op=s.op, summary=s.summary, depends=s.depends) for s in plan.steps
        },
    )


def artifact_path(artifact: Path) -> Path:
    """The file or folder a step returned for an output artifact.

    dflow stores an output as a folder holding the returned path (relative to the step's directory)
    plus a ``.dflow/`` catalog naming it; a single cataloged item is resolved to that item.
    """
    target = artifact.resolve()
    catalog = target / ".dflow"
    if not catalog.is_dir():
        return target
    items = []
    for entry in sorted(catalog.iterdir()):
        try:
            items += [i["dflow_list_item"] for i in json.loads(entry.read_text()).get("path_list", [])]
        except (ValueError, KeyError, TypeError):
            return target
    return target / items[0] if len(items) == 1 and (target / items[0]).exists() else target


def _collect_outputs(run_dir: Path, summary: RunSummary, plan: Plan) -> None:
    """Output artifacts (as run-relative paths) and parameters of every finished step, models and metrics."""
    for key, record in summary.steps.items():
        out_dir = run_dir / STEPS_DIR / key / "outputs"
        for art in sorted((out_dir / "artifacts").glob("*")) if (out_dir / "artifacts").is_dir() else []:
            if art.name.startswith("."):
                continue
            record.outputs[art.name] = os.path.relpath(artifact_path(art), run_dir)
        for par in sorted((out_dir / "parameters").glob("*")) if (out_dir / "parameters").is_dir() else []:
            if par.name.startswith(".") or par.name.startswith("dflow_"):
                continue
            text = par.read_text()
            try:
                record.parameters[par.name] = json.loads(text)
            except json.JSONDecodeError:
                record.parameters[par.name] = text
    models_dir = run_dir / "models"
    for step in plan.steps:
        record = summary.steps[step.key]
        if step.model_ref is not None and "model" in record.outputs:
            ref = step.model_ref
            models_dir.mkdir(exist_ok=True)
            link = models_dir / f"{model_slug(ref)}.pth"
            link.unlink(missing_ok=True)
            link.symlink_to(os.path.relpath(run_dir / record.outputs["model"], models_dir))
            summary.models[ref] = os.path.relpath(link, run_dir)
    summary.tests = [
        TestResult(
            step=t.key,
            model=t.model,
            dataset=t.dataset,
            refit_bias_on=t.refit_bias_on,
            metrics=summary.steps[t.key].parameters.get("metrics", {}),
        )
        for t in plan.tests
        if summary.steps[t.key].phase == "Succeeded"
    ]


def run_local(
    plan: Plan,
    run_dir: Path,
    summary: RunSummary,
    settings: Settings,
    report: Reporter | None = None,
) -> RunSummary:
    """Run ``plan`` to completion in ``run_dir`` (which must exist); returns the final summary."""
    started = time.monotonic()
    summary.status = "Running"
    summary.write(run_dir)
    (run_dir / "plan.json").write_text(json.dumps(plan_record(plan), indent=2) + "\n")
    config = local_debug_config(str(run_dir), str(run_dir / "artifacts"), settings.local_workers)
    interrupted = False
    with _CapturedOutput(run_dir / "engine.log") as terminal:
        watcher = _Watcher(run_dir, summary, (lambda e: report(e, terminal)) if report else (lambda e: None))
        try:
            with dflow_config(config):
                from dflow import upload_artifact

                staged = {rid: upload_artifact(req) for rid, req in staging_requests(plan).items()}
                workflow = build_workflow(
                    plan, staged, StepRuntime(command=(settings.python,)), workflow_id=STEPS_DIR
                )
                watcher.start()
                cwd = os.getcwd()
                try:
                    workflow.submit()  # debug mode: blocks until the DAG finishes or a step fails
                finally:
                    os.chdir(cwd)
        except KeyboardInterrupt:
            interrupted = True
        finally:
            watcher.stop_event.set()
            if watcher.is_alive():
                watcher.join()
            watcher.poll()
    status = _read(run_dir / STEPS_DIR / "status")
    _collect_outputs(run_dir, summary, plan)
    failed = [r for r in summary.steps.values() if r.phase == "Failed"]
    for record in summary.steps.values():
        if record.phase in ("Pending", "Running") and (failed or interrupted):
            if record.phase == "Running":
                record.error = "stopped: " + ("interrupted" if interrupted else "another step failed")
            record.phase = "Skipped"
    summary.status = "Succeeded" if status == "Succeeded" and not failed and not interrupted else "Failed"
    if interrupted:
        summary.error = "interrupted"
    elif failed:
        summary.error = f"step {failed[0].key} failed: {failed[0].error}"
    elif summary.status == "Failed":
        summary.error = f"workflow ended with status {status!r}; see {run_dir / 'engine.log'}"
    summary.finished_at = now()
    summary.wall_time_s = round(time.monotonic() - started, 1)
    summary.write(run_dir)
    (run_dir / "metrics.json").write_text(
        json.dumps([t.model_dump() for t in summary.tests], indent=2) + "\n"
    )
    if interrupted:
        raise KeyboardInterrupt
    return summary
