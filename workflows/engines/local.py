"""Local engine: runs a compiled workflow with dflow's debug mode (steps are local subprocesses).

Layout of a run directory::

    <run-dir>/spec.yaml       the spec as submitted
    <run-dir>/plan.json       the step plan (keys, ops, parameters, dependencies)
    <run-dir>/summary.json    phases, timings, outputs, metrics — updated while the run progresses
    <run-dir>/metrics.json    test results (model x dataset -> errors)
    <run-dir>/engine.log      everything the steps printed (DeePMD-kit logs included)
    <run-dir>/models/         links to every frozen model (<stage>-<name>.pth)
    <run-dir>/steps/<key>/    dflow's step directories (inputs/, outputs/, workdir/, log.txt)

Short steps run in their step group's worker process (engines/workers.py; ``--no-group`` turns it off),
each still its own dflow step with its own directory, log, phase and timing.

A step whose cache key has a stored result gets its ``steps/<key>/outputs/`` restored from the store and
is marked done for dflow, which then skips it (phase ``Cached``); every step that succeeds is published
to the store. ``resume`` reruns a run directory in place: dflow skips its finished steps and reruns the
others in their old work directories, where training steps find their checkpoints.
"""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import signal
import sys
import threading
import time
from collections.abc import Callable
from datetime import datetime, timezone
from pathlib import Path
from typing import TextIO

from lamflow.ops.dp import DEEPMD_MODULES, real_dp
from lamflow.ops.runtime.slots import lay_out
from lamflow.ops.runtime.warnings import scan_warnings
from lamflow.workflows.compile.dflow_workflow import StepRuntime, build_workflow, staging_requests
from lamflow.workflows.compile.loops import unroll
from lamflow.workflows.compile.plan import ArtifactSource, LocalFile, Plan, StepOutput
from lamflow.workflows.dflow_config import dflow_config, local_debug_config
from lamflow.workflows.engines.base import Engine, Reporter, StepEvent
from lamflow.workflows.engines.dflow_dag import LocalDAG
from lamflow.workflows.engines.loops import PLAN_FILE, add_records, loop_progress, loop_records
from lamflow.workflows.engines.machine import (
    SLOTS_DIR,
    Machine,
    check_fits,
    detect,
    needs_of,
    nodes_of,
    pool_size,
    ran_on,
    step_environment,
)
from lamflow.workflows.engines.outputs import link_models
from lamflow.workflows.engines.summary import DONE, RunSummary, StepRecord, read_summary
from lamflow.workflows.engines.workers import StepWorkers
from lamflow.workflows.errors import LamflowError, UsageError
from lamflow.workflows.settings import Settings
from lamflow.workflows.store.local import STEPS_DIR, LocalStore
from lamflow.workflows.store.step_cache import Digests, StepCache, cache_keys
from lamflow.workflows.timestamps import now

POLL_S = 0.5
PID_FILE = "engine.pid"  # the process running a local run, while it runs (for `lamflow stop`)
STOPPING_FILE = "stopping"  # written by `lamflow stop` (or on Ctrl-C) before the signals: the run is ending
ENGINE_LOG = "engine.log"


def _iso(ns: int) -> str:
    return datetime.fromtimestamp(ns / 1e9, timezone.utc).isoformat(timespec="milliseconds")


def _step_span(step_dir: Path, since_ns: int) -> tuple[int, int] | None:
    """When a finished step's command started and ended, from the files dflow writes: ``pid`` right after
    starting it, ``phase`` right after it ended (finer than the watcher's polling). None if unknown."""
    start, end = _mtime(step_dir / "pid"), _mtime(step_dir / "phase")
    if start is None or end is None or start < since_ns or end < start:
        return None
    return start, end


def _with_slots(
    plan: Plan, commands: dict[str, tuple[str, ...]], pool: Path, settings: Settings, machine: Machine
) -> dict[str, tuple[str, ...]]:
    """Every step's command, starting with the environment that tells it its slot (``env K=V ... cmd``)."""
    env = shutil.which("env") or "/usr/bin/env"
    out: dict[str, tuple[str, ...]] = {}
    for step in plan.steps:
        needs = needs_of(step, plan, settings, machine)
        variables = step_environment(pool, step.key, needs, nodes_of(step, plan))
        base = commands.get(step.key, (settings.python,))
        out[step.key] = (env, *(f"{k}={v}" for k, v in variables.items()), *base)
    return out


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

    def __init__(
        self,
        run_dir: Path,
        summary: RunSummary,
        report: Callable[[StepEvent], None],
        on_success: Callable[[str], None] = lambda key: None,
    ) -> None:
        super().__init__(daemon=True)
        self.run_dir = run_dir
        self.summary = summary
        self.report = report
        self.on_success = on_success
        self.stale: dict[str, int] = {}  # step -> mtime of a phase file left by an earlier attempt
        self.stop_event = threading.Event()
        self.started = time.monotonic()
        self.started_ns = time.time_ns()
        self.started_mono: dict[str, float] = {}
        self.lock = threading.Lock()

    def stopping(self) -> bool:
        """The run is being stopped: steps that start now are not announced (they are ended at once)."""
        return (self.run_dir / STOPPING_FILE).exists()

    def poll(self) -> None:
        with self.lock:
            changed = False
            for key, record in self.summary.steps.items():
                phase_file = self.run_dir / STEPS_DIR / key / "phase"
                if key in self.stale and _mtime(phase_file) == self.stale[key]:
                    continue  # what an earlier attempt left; this one has not reached the step yet
                phase = _read(phase_file)
                if (
                    record.phase == "Cached"
                    or phase not in ("Running", "Succeeded", "Failed")
                    or phase == record.phase
                ):
                    continue
                t = time.monotonic()
                if record.phase == "Pending":
                    record.started_at = now()
                    self.started_mono[key] = t
                    if phase != "Running":  # finished between two polls
                        self.emit(key, "Running", None)
                record.phase = phase  # type: ignore[assignment]
                duration = None
                if phase in ("Succeeded", "Failed"):
                    record.finished_at = now()
                    duration = round(t - self.started_mono.get(key, t), 1)
                    if (span := _step_span(self.run_dir / STEPS_DIR / key, self.started_ns)) is not None:
                        record.started_at, record.finished_at = (_iso(ns) for ns in span)
                        duration = round((span[1] - span[0]) / 1e9, 2)
                    record.duration_s = duration
                    record.warnings = scan_warnings(_read(self.run_dir / STEPS_DIR / key / "log.txt") or "")
                    record.ran_on = ran_on(self.run_dir, key)
                    if phase == "Failed":
                        record.error = _step_error(self.run_dir / STEPS_DIR / key)
                    else:
                        self.on_success(key)
                self.emit(key, phase, duration)
                changed = True
            if changed:
                self.summary.write(self.run_dir)

    def emit(self, key: str, phase: str, duration: float | None) -> None:
        if self.stopping():
            return  # what the stop does to each step is said once, at the end
        record = self.summary.steps[key]
        elapsed = round(time.monotonic() - self.started, 1)
        finished = phase in ("Succeeded", "Failed")
        warnings = tuple(record.warnings) if finished else ()
        self.report(StepEvent(key, phase, elapsed, duration, record.summary, record.error, warnings))

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


def _collect_outputs(run_dir: Path, summary: RunSummary, plan: Plan, store: LocalStore) -> None:
    """Output artifacts (as run-relative paths) and parameters of every finished step, models and metrics."""
    for key, record in summary.steps.items():
        out_dir = run_dir / STEPS_DIR / key / "outputs"
        for art in sorted((out_dir / "artifacts").glob("*")) if (out_dir / "artifacts").is_dir() else []:
            found = None if art.name.startswith(".") else store.output_path(run_dir, key, art.name)
            if found is not None:
                record.outputs[art.name] = os.path.relpath(found, run_dir)
        for par in sorted((out_dir / "parameters").glob("*")) if (out_dir / "parameters").is_dir() else []:
            if par.name.startswith(".") or par.name.startswith("dflow_"):
                continue
            text = par.read_text()
            try:
                record.parameters[par.name] = json.loads(text)
            except json.JSONDecodeError:
                record.parameters[par.name] = text
    link_models(run_dir, summary, plan)


def _mark_stopping(run_dir: Path) -> None:
    """Record when the run began to stop (the first call wins)."""
    marker = run_dir / STOPPING_FILE
    if not marker.exists():
        marker.write_text(f"{time.time()}\n")


def _stop_time(run_dir: Path) -> float:
    try:
        return float((run_dir / STOPPING_FILE).read_text().strip())
    except (OSError, ValueError):
        return time.time()


def _preload(plan: Plan, machine: Machine) -> list[str]:
    """What the step launcher imports for this plan's steps before it forks them: their ops' preload and,
    on a machine without GPUs with the real DeePMD-kit (no ``LAMFLOW_DP``), DeePMD-kit itself (see
    :mod:`lamflow.ops.runtime.launcher`; with GPUs each step imports it, CUDA not being fork-safe)."""
    names = sorted({name for step in plan.steps for name in step.op.preload})
    if not machine.gpus and real_dp():
        names += DEEPMD_MODULES
    return names


ENDED_BY_ENGINE = "Got SIGTERM"  # what dflow's step script says when the engine ends it


def _settle_failed(summary: RunSummary) -> list[StepRecord]:
    """The failed steps, the first to fail first. A step that failed only because the engine ended it
    after another step had failed (dflow fails fast, and the run's processes get SIGTERM) is Skipped,
    "stopped: another step failed", and never named as the run's error."""
    failed = sorted(
        (r for r in summary.steps.values() if r.phase == "Failed"), key=lambda r: r.finished_at or "~"
    )
    for record in failed[1:]:
        if record.error == ENDED_BY_ENGINE:
            record.phase, record.error = "Skipped", "stopped: another step failed"
    return [r for r in failed if r.phase == "Failed"]


STOP_GRACE_S = 2.0  # a step that failed this long before the stop was marked failed on its own


def _settle_interrupted(summary: RunSummary, stopped_at: float) -> None:
    """What a stop did to each step: a running step, or one that failed as the stop's signal reached it,
    is Interrupted (resume runs it again); a step that never started, or that dflow launched after the
    stop and the run refused ("step not started"), is Skipped; finished steps keep their phase."""
    for record in summary.steps.values():
        if record.phase == "Running":
            record.phase, record.error = "Interrupted", "interrupted (lamflow stop or Ctrl-C)"
        elif record.phase == "Pending":
            record.phase = "Skipped"
        elif record.phase == "Failed" and "step not started" in (record.error or ""):
            record.phase, record.error = "Skipped", None
        elif record.phase == "Failed" and _finished_after(record.finished_at, stopped_at - STOP_GRACE_S):
            record.phase, record.error = "Interrupted", "interrupted (lamflow stop or Ctrl-C)"


def _finished_after(finished_at: str | None, moment: float) -> bool:
    from datetime import datetime

    if finished_at is None:
        return True
    try:
        return datetime.fromisoformat(finished_at.replace("Z", "+00:00")).timestamp() >= moment
    except ValueError:
        return True


def _hear_interrupts() -> None:
    """A run started with SIGINT ignored (a background job of a non-interactive shell: CI scripts,
    ``cmd &``) would ignore ``lamflow stop``, and so would every step it starts (an ignored signal stays
    ignored across exec). Handle it as Python does by default; the steps then start with the default."""
    if (
        threading.current_thread() is threading.main_thread()
        and signal.getsignal(signal.SIGINT) == signal.SIG_IGN
    ):
        signal.signal(signal.SIGINT, signal.default_int_handler)


def _end_stragglers(run_dir: Path, quiet_s: float = 1.0, limit_s: float = 15.0) -> None:
    """After an interrupt: stop every process still below this one and working in ``run_dir`` (a step),
    until none has appeared for ``quiet_s``. A step that dflow's thread launched just after ``lamflow
    stop`` sent its signals (a race that widens on a loaded machine) would otherwise run on, and this
    process wait for it at exit. SIGINT first (what Ctrl-C sends), SIGKILL for what is still there after
    ``limit_s``."""
    deadline = time.monotonic() + limit_s
    quiet_since = time.monotonic()
    while time.monotonic() - quiet_since < quiet_s:
        found = [pid for pid in _descendants(os.getpid()) if _works_in(pid, run_dir)]
        if found:
            quiet_since = time.monotonic()
            sig = signal.SIGINT if time.monotonic() < deadline else signal.SIGKILL
            for pid in found:
                try:
                    os.kill(pid, sig)
                except ProcessLookupError:
                    pass
        time.sleep(0.1)


def _works_in(pid: int, run_dir: Path) -> bool:
    try:
        return Path(os.readlink(f"/proc/{pid}/cwd")).is_relative_to(run_dir.resolve())
    except OSError:
        return False


def _descendants(pid: int) -> list[int]:
    """Every process below ``pid`` (Linux /proc), children first; empty where /proc is unavailable."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = entry.read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        children.setdefault(int(fields[1]), []).append(int(entry.parent.name))
    found: list[int] = []
    todo = [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            found.append(child)
            todo.append(child)
    return found


def _mtime(path: Path) -> int | None:
    try:
        return path.stat().st_mtime_ns
    except OSError:
        return None


def _reset_unfinished(steps_dir: Path, summary: RunSummary) -> dict[str, int]:
    """Before a resume: steps that did not finish go back to Pending (their work directories stay).
    Returns the phase files they left (step -> mtime), which the watcher ignores until they change."""
    stale = {}
    for key, record in summary.steps.items():
        if record.phase in DONE and _read(steps_dir / key / "phase") == "Succeeded":
            continue
        if (mtime := _mtime(steps_dir / key / "phase")) is not None:
            stale[key] = mtime
        record.phase = "Pending"
        record.started_at = record.finished_at = record.duration_s = record.error = None
        record.warnings = []
    return stale


def _restore_cached(plan: Plan, steps_dir: Path, summary: RunSummary, cache: StepCache) -> list[str]:
    """Restore the stored outputs of every step that has a cached result and no directory yet."""
    restored = []
    for step in plan.steps:
        record = summary.steps[step.key]
        step_dir = steps_dir / step.key
        if record.cache_key is None or step_dir.exists():
            continue
        manifest = cache.lookup(record.cache_key)
        if manifest is None:
            continue
        try:
            cache.restore(record.cache_key, manifest, step_dir / "outputs")
        except LamflowError as exc:
            summary.notices.append(f"step {step.key}: cached result not used ({exc})")
            shutil.rmtree(step_dir, ignore_errors=True)
            continue
        for name, text in (("type", "Pod"), ("name", step.key), ("phase", "Succeeded")):
            (step_dir / name).write_text(text)
        record.warnings = [str(w) for w in manifest.get("warnings") or []]  # what its own run warned
        restored.append(step.key)
    return restored


def _publisher(run_dir: Path, summary: RunSummary, cache: StepCache | None) -> Callable[[str], None]:
    """Store a succeeded step's outputs under its cache key; a failure to store is a notice, not an error."""

    def publish(key: str) -> None:
        record = summary.steps[key]
        if cache is None or record.cache_key is None:
            return
        try:
            if cache.lookup(record.cache_key) is None:
                cache.publish(record.cache_key, run_dir / STEPS_DIR / key / "outputs", key, record.warnings)
        except LamflowError as exc:
            summary.notices.append(f"step {key}: result not stored in the step cache ({exc})")

    return publish


def _groups_to_run(plan: Plan, summary: RunSummary) -> dict[str, tuple[str, ...]]:
    """The step groups with steps left to run (a worker is started for each)."""
    left = {
        name: tuple(k for k in keys if summary.steps[k].phase not in DONE)
        for name, keys in plan.groups.items()
    }
    return {name: keys for name, keys in left.items() if keys}


def _left_to_run(plan: Plan, summary: RunSummary, run_dir: Path, store: LocalStore) -> Plan:
    """The steps that have not finished, reading what finished steps output as files. dflow's debug mode
    deep-copies its whole DAG whenever a step ends (quadratic in the steps, finished ones included): a loop's
    later iterations, a resumed or a cached run would pay for every step that already ran. The plan as it
    is when an output of a finished step cannot be found."""
    done = {key for key, record in summary.steps.items() if record.phase in DONE}
    steps = []
    for step in plan.steps:
        if step.key in done:
            continue
        artifacts: dict[str, ArtifactSource] = {}
        for name, source in step.artifacts.items():
            if isinstance(source, StepOutput) and source.step in done:
                found = store.output_path(run_dir, source.step, source.name)
                if found is None:
                    return plan
                artifacts[name] = LocalFile(found)
            else:
                artifacts[name] = source
        steps.append(step if artifacts == step.artifacts else dataclasses.replace(step, artifacts=artifacts))
    left = {step.key for step in steps}
    groups = {name: tuple(k for k in keys if k in left) for name, keys in plan.groups.items()}
    return dataclasses.replace(plan, steps=tuple(steps), groups={n: k for n, k in groups.items() if k})


def _let_dflow_continue(steps_dir: Path) -> None:
    """dflow's debug mode continues a workflow directory (skipping its succeeded steps) when it finds a
    status other than Succeeded and a ``pid`` that is not alive; make sure it finds both."""
    status = _read(steps_dir / "status")
    if status is None or status == "Succeeded":
        (steps_dir / "status").write_text("Pending")
    (steps_dir / "pid").write_text(str(2**31 - 1))  # beyond Linux's pid_max: never a live process


class LocalEngine(Engine):
    """Runs a plan on this machine with dflow's debug mode; ``submit`` blocks until the run ends."""

    name = "local"

    def __init__(self, settings: Settings, store: LocalStore | None = None) -> None:
        self.settings = settings
        self.store = store or LocalStore()
        self.digests = Digests()  # content digests of the inputs, for the cache keys of loop iterations
        self._machine: Machine | None = None

    def submit(
        self,
        plan: Plan,
        run_dir: Path,
        summary: RunSummary,
        report: Reporter | None = None,
        cache: StepCache | None = None,
        resume: bool = False,
        wait: bool = True,  # a local run always runs to its end
    ) -> RunSummary:
        """Run ``plan`` to completion in ``run_dir`` (which must exist); returns the final summary.

        With ``cache``, steps with a stored result (by the ``cache_key`` of their summary record) are
        restored instead of run, and finished steps are stored. With ``resume``, ``run_dir`` holds an
        earlier, unfinished attempt of the same plan."""
        check_fits(plan, self.settings, self.machine())  # before anything is written
        started = time.monotonic()
        summary.cache = cache is not None
        summary.status = "Running"
        summary.finished_at = summary.error = None
        summary.write(run_dir)
        (run_dir / PLAN_FILE).write_text(json.dumps(plan.record(), indent=2) + "\n")
        (run_dir / PID_FILE).write_text(f"{os.getpid()}\n")
        steps_dir = run_dir / STEPS_DIR
        stale = _reset_unfinished(steps_dir, summary) if resume else {}
        publish = _publisher(run_dir, summary, cache)
        interrupted = False
        (run_dir / STOPPING_FILE).unlink(missing_ok=True)
        _hear_interrupts()
        current = plan
        with _CapturedOutput(run_dir / ENGINE_LOG) as terminal:
            watcher = _Watcher(
                run_dir, summary, (lambda e: report(e, terminal)) if report else (lambda e: None), publish
            )
            watcher.stale = stale
            for key, record in summary.steps.items():
                if record.phase in DONE:
                    watcher.emit(key, record.phase, None)
            try:
                progress = None
                with StepWorkers(self.settings.python) as workers:  # the launcher, kept for every pass
                    while True:  # one pass, or one per iteration of the plan's loops (engines/loops.py)
                        if plan.loops:
                            progress = loop_progress(plan, run_dir)
                            current = unroll(plan, progress)
                            with watcher.lock:
                                for key in add_records(
                                    summary, current, cache_keys(current, digest=self.digests)
                                ):
                                    watcher.stale.pop(key, None)
                                summary.loops = loop_records(plan, run_dir, summary)
                                summary.write(run_dir)
                        status, interrupted = self._run_pass(
                            current, run_dir, summary, cache, publish, watcher, workers
                        )
                        if interrupted or status != "Succeeded" or not plan.loops:
                            break
                        _collect_outputs(run_dir, summary, current, self.store)
                        if loop_progress(plan, run_dir) == progress:
                            break  # every loop stopped and the steps after them ran
            finally:
                watcher.stop_event.set()
                if watcher.is_alive():
                    watcher.join()
                watcher.poll()
        _collect_outputs(run_dir, summary, current, self.store)
        if plan.loops:
            summary.loops = loop_records(plan, run_dir, summary)
        if interrupted:
            _settle_interrupted(summary, _stop_time(run_dir))
        failed = _settle_failed(summary)
        for record in summary.steps.values():
            if record.phase in ("Pending", "Running") and failed:
                if record.phase == "Running":
                    record.error = "stopped: another step failed"
                record.phase = "Skipped"
        summary.status = "Succeeded" if status == "Succeeded" and not failed and not interrupted else "Failed"
        if interrupted:
            summary.error = "interrupted"
        elif failed:
            summary.error = f"step {failed[0].key} failed: {failed[0].error}"
        elif summary.status == "Failed":
            summary.error = f"workflow ended with status {status!r}; see {run_dir / ENGINE_LOG}"
        summary.finished_at = now()
        summary.wall_time_s = round(time.monotonic() - started, 1)
        summary.write(run_dir)
        (run_dir / "metrics.json").write_text(
            json.dumps([t.model_dump() for t in summary.tests], indent=2) + "\n"
        )
        (run_dir / PID_FILE).unlink(missing_ok=True)
        (run_dir / STOPPING_FILE).unlink(missing_ok=True)
        if interrupted:
            raise KeyboardInterrupt
        return summary

    def _run_pass(
        self,
        plan: Plan,
        run_dir: Path,
        summary: RunSummary,
        cache: StepCache | None,
        publish: Callable[[str], None],
        watcher: _Watcher,
        workers: StepWorkers,
    ) -> tuple[str | None, bool]:
        """Run one static plan with dflow (steps that finished before are kept), its step processes
        started by ``workers`` (the run's launcher): (dflow's status of the workflow, whether it was
        interrupted)."""
        steps_dir = run_dir / STEPS_DIR
        if cache is not None:
            with watcher.lock:
                for key in _restore_cached(plan, steps_dir, summary, cache):
                    summary.steps[key].phase = "Cached"
                    watcher.emit(key, "Cached", None)
                for key, record in summary.steps.items():
                    if record.phase == "Succeeded":  # finished by an earlier attempt, maybe not stored yet
                        publish(key)
                summary.write(run_dir)
        if steps_dir.is_dir():
            _let_dflow_continue(steps_dir)
        for key in (step.key for step in plan.steps):
            summary.steps[key].group = plan.group_of(key) if self.settings.group else None
        plan = _left_to_run(plan, summary, run_dir, self.store)
        if not plan.steps:
            return "Succeeded", False  # every step finished before (an earlier pass, attempt or the cache)
        in_plan = {step.key for step in plan.steps}
        groups = _groups_to_run(plan, summary) if self.settings.group else {}
        grouped = {key for keys in groups.values() for key in keys}
        left = [k for k, record in summary.steps.items() if record.phase not in DONE and k in in_plan]
        launched = [key for key in left if key not in grouped] if self.settings.fork_steps else []
        machine = self.machine()
        pool = run_dir / SLOTS_DIR
        lay_out(pool, machine)
        config = local_debug_config(
            str(run_dir), str(run_dir / "artifacts"), pool_size(self.settings, machine)
        )
        interrupted = False
        try:
            with (
                dflow_config(config),
                workers.serving(groups, launched, preload=_preload(plan, machine)),
            ):
                staged = {rid: self.store.stage(rid, req) for rid, req in staging_requests(plan).items()}
                runtime = StepRuntime(
                    command=(self.settings.python,),
                    step_commands=_with_slots(plan, workers.commands(), pool, self.settings, machine),
                )
                workflow = build_workflow(plan, staged, runtime, workflow_id=STEPS_DIR, dag_type=LocalDAG)
                if not watcher.is_alive():
                    watcher.start()
                cwd = os.getcwd()
                try:
                    workflow.submit()  # debug mode: blocks until the DAG finishes or a step fails
                finally:
                    os.chdir(cwd)
        except KeyboardInterrupt:
            interrupted = True
            _mark_stopping(run_dir)  # Ctrl-C: no `lamflow stop` wrote it
            _end_stragglers(run_dir)
        watcher.poll()
        return _read(steps_dir / "status"), interrupted

    def machine(self) -> Machine:
        """The GPUs and cores this engine hands out (engines/machine.py)."""
        if self._machine is None:
            self._machine = detect(self.settings)
        return self._machine

    def status(self, run_dir: Path) -> RunSummary:
        return read_summary(run_dir, self.settings.run_root)[1]

    def wait(self, run_dir: Path, timeout_s: float | None = None) -> RunSummary:
        deadline = None if timeout_s is None else time.monotonic() + timeout_s
        while True:
            summary = self.status(run_dir)
            if summary.status in ("Succeeded", "Failed") or not self._running_pid(run_dir):
                return summary
            if deadline is not None and time.monotonic() >= deadline:
                return summary
            time.sleep(POLL_S)

    def logs(self, run_dir: Path, step: str | None = None) -> str:
        if step is None:
            return _read(run_dir / ENGINE_LOG) or ""
        summary = self.status(run_dir)
        if step not in summary.steps:
            raise UsageError(f"{run_dir}: no step {step!r} (steps: {', '.join(summary.steps)})")
        text = _read(run_dir / STEPS_DIR / step / "log.txt")
        if text is None:
            raise UsageError(
                f"{run_dir}: step {step!r} has not written a log yet (phase {summary.steps[step].phase})"
            )
        return text

    def stop(self, run_dir: Path) -> None:
        summary = self.status(run_dir)
        pid = self._running_pid(run_dir)
        if summary.status not in ("Pending", "Running") or pid is None:
            raise UsageError(f"{run_dir}: not running (status {summary.status})")
        _mark_stopping(run_dir)
        # what Ctrl-C does to a foreground run: every process of the run gets SIGINT, the engine first
        for target in [pid, *_descendants(pid)]:
            try:
                os.kill(target, signal.SIGINT)
            except ProcessLookupError:
                pass

    def running(self, run_dir: Path) -> bool:
        return self._running_pid(run_dir) is not None

    @staticmethod
    def _running_pid(run_dir: Path) -> int | None:
        text = _read(run_dir / PID_FILE)
        if not text or not text.strip().isdigit():
            return None
        pid = int(text.strip())
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return None
        except PermissionError:
            return pid
        return pid
