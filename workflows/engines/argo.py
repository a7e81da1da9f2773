"""The Argo engine: a run is an Argo Workflow on a Kubernetes cluster, created through the Argo Server.

``submit`` checks the settings (``LAMFLOW_ARGO_SERVER``, ``LAMFLOW_IMAGE``, an ``s3://`` ``LAMFLOW_STORE``)
and that the server accepts the token, uploads the staged inputs into the store's bucket
(:mod:`lamflow.workflows.argo.staging`), renders the Workflow with those keys and the run id, creates it,
and records the workflow in ``summary.json`` (``argo``). With ``wait`` it follows the workflow and reports
step transitions like the local engine; ``status``/``wait``/``logs``/``stop`` read the workflow from the
server and keep ``summary.json`` in the shape a local run has (steps, phases, times, output parameters).

``download`` brings the steps' outputs into the run directory. Not built yet: the step cache (every step
runs) and ``resume`` (``resubmit`` runs the workflow again instead).
"""

from __future__ import annotations

import json
import os
import re
import time
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any

from lamflow.ops.runtime.files import resolve_output
from lamflow.workflows.argo.client import ArgoClient
from lamflow.workflows.compile.plan import Plan
from lamflow.workflows.engines.base import Engine, Reporter, report_transitions
from lamflow.workflows.engines.loops import PLAN_FILE, argo_loop_records
from lamflow.workflows.engines.summary import ArgoRun, RunSummary, StepRecord, read_summary
from lamflow.workflows.errors import UsageError
from lamflow.workflows.settings import Settings
from lamflow.workflows.store.step_cache import StepCache
from lamflow.workflows.timestamps import now

# Argo node phase -> lamflow step phase
PHASES = {
    "Pending": "Pending",
    "Running": "Running",
    "Succeeded": "Succeeded",
    "Failed": "Failed",
    "Error": "Failed",
    "Skipped": "Skipped",
    "Omitted": "Skipped",
}
FINISHED = ("Succeeded", "Failed", "Error")


class ArgoEngine(Engine):
    name = "argo"

    def __init__(self, settings: Settings) -> None:
        self.settings = settings

    def _client(self, summary: RunSummary | None = None) -> ArgoClient:
        token = self.settings.argo_token.get_secret_value() if self.settings.argo_token else None
        if summary is not None and summary.argo is not None:
            return ArgoClient(summary.argo.server, summary.argo.namespace, token)
        if not self.settings.argo_server:
            raise UsageError(
                "LAMFLOW_ARGO_SERVER: not set (the Argo Server URL, e.g. https://argo.example.org:2746)"
            )
        return ArgoClient(self.settings.argo_server, self.settings.argo_namespace, token)

    def check(self) -> None:
        """Refuse bad settings before anything is uploaded or written (exit 2, naming the setting)."""
        if not self.settings.image:
            raise UsageError(
                "LAMFLOW_IMAGE: not set (the step image pods run, e.g. registry/lamflow-ops:0.1.0-cuda)"
            )
        if not self.settings.store.startswith("s3://"):
            raise UsageError(
                f"LAMFLOW_STORE={self.settings.store}: the Argo engine needs an s3://bucket/prefix store "
                "(pods read their inputs from it)"
            )
        self._client()

    def submit(
        self,
        plan: Plan,
        run_dir: Path,
        summary: RunSummary,
        report: Reporter | None = None,
        cache: StepCache | None = None,
        resume: bool = False,
        wait: bool = True,
    ) -> RunSummary:
        from lamflow.workflows.argo.render import RenderOptions, SpecIdentity, render, to_yaml
        from lamflow.workflows.argo.staging import stage_inputs
        from lamflow.workflows.store.locate import s3_store

        if resume:
            raise UsageError(f"{run_dir}: an Argo run; run it again with `lamflow resubmit {run_dir}`")
        self.check()
        client = self._client()
        client.check()  # the token and the server, before anything is uploaded
        keys = stage_inputs(plan, s3_store(self.settings, "the Argo engine"))
        identity = SpecIdentity(plan.name, "", summary.spec_sha256)
        options = RenderOptions(run_id=summary.run_id, input_keys=keys)
        manifest = render(plan, plan.resources, self.settings, identity, options)
        if self.settings.group:
            from lamflow.workflows.argo.groups import pod_groups

            for group, members in pod_groups(plan).items():
                for key in members:
                    summary.steps[key].group = group
        created = client.create(manifest)
        summary.argo = _run_ref(client, created["metadata"]["name"])
        summary.status = "Running"
        summary.write(run_dir)
        (run_dir / "workflow.yaml").write_text(to_yaml(manifest))
        (run_dir / PLAN_FILE).write_text(json.dumps(plan.record(), indent=2) + "\n")  # loops' shapes
        if not wait:
            return summary
        return self._follow(run_dir, summary, client, report)

    def _follow(
        self,
        run_dir: Path,
        summary: RunSummary,
        client: ArgoClient,
        report: Reporter | None,
        timeout_s: float | None = None,
    ) -> RunSummary:
        started = time.monotonic()
        seen: dict[str, str] = {key: record.phase for key, record in summary.steps.items()}
        while True:
            summary = self._refresh(run_dir, summary, client)
            if report is not None:
                report_transitions(summary, seen, started, report)
            if summary.status in ("Succeeded", "Failed"):
                return summary
            if timeout_s is not None and time.monotonic() - started >= timeout_s:
                return summary
            time.sleep(self.settings.argo_poll_s)

    def _refresh(self, run_dir: Path, summary: RunSummary, client: ArgoClient) -> RunSummary:
        """Read the workflow from the server into the summary (and write it)."""
        assert summary.argo is not None
        workflow = client.get(summary.argo.name)
        status = workflow.get("status") or {}
        phase = status.get("phase")
        summary.argo.phase = phase
        by_task: dict[str, dict[str, Any]] = {}  # a step's or a step group's node
        job_parts: dict[str, list[dict[str, Any]]] = {}  # training across nodes: its stage and job nodes
        for node in _nodes(workflow):
            name = _step_key(node)
            if name not in summary.steps and LOOP_STEP.search(name) and node.get("type") in ("Pod", "Retry"):
                summary.steps[name] = StepRecord(  # a loop's iteration: its steps exist once it runs
                    key=name, op=str(node.get("templateName", "")), summary="a step of a loop's iteration"
                )
            part = JOB_PART.match(name)
            if name not in summary.steps and part and part["key"] in summary.steps:
                job_parts.setdefault(part["key"], []).append(node)
                continue
            if node.get("type") in ("Pod", "Retry"):
                # a retried task has a Retry node over its attempts: it speaks for the task
                if name not in by_task or node.get("type") == "Retry":
                    by_task[name] = node
        for key, parts in job_parts.items():
            if key not in by_task:  # until its collect step runs, the step is its job
                _apply_job(summary.steps[key], parts)
        for group, keys in _groups(summary).items():
            if group in by_task:
                _apply_group(summary, keys, by_task[group])
        for key, node in by_task.items():
            if key not in summary.steps:
                continue
            record = summary.steps[key]
            record.phase = PHASES.get(node.get("phase", ""), record.phase)  # type: ignore[assignment]
            _take_times(record, node)
            if record.phase == "Failed":
                record.error = node.get("message") or record.error or f"Argo node {node.get('phase')}"
            for parameter in (node.get("outputs") or {}).get("parameters") or []:
                record.parameters[parameter["name"]] = _value(parameter.get("value"))
            if key in job_parts:  # a step that ran as a job: from its stage to its collect step
                _take_times(
                    record, {**node, "startedAt": _first_start(job_parts[key]) or node.get("startedAt")}
                )
        if LOOP_STEP.search(" ".join(summary.steps)):
            summary.loops = argo_loop_records(run_dir, summary)
        if phase in FINISHED:
            summary.status = "Succeeded" if phase == "Succeeded" else "Failed"
            summary.finished_at = status.get("finishedAt") or now()
            if phase != "Succeeded":
                summary.error = status.get("message") or f"workflow {summary.argo.name} {phase}"
            for record in summary.steps.values():
                if record.phase in ("Pending", "Running"):
                    record.phase = "Skipped"
            if status.get("startedAt") and status.get("finishedAt"):
                summary.wall_time_s = round(_seconds(status["finishedAt"]) - _seconds(status["startedAt"]), 1)
        elif phase:
            summary.status = "Running"
        summary.write(run_dir)
        return summary

    def _argo_summary(self, run_dir: Path) -> tuple[RunSummary, ArgoClient]:
        summary = read_summary(run_dir, self.settings.run_root)[1]
        if summary.argo is None:
            raise UsageError(f"{run_dir}: the Argo workflow was never created (status {summary.status})")
        return summary, self._client(summary)

    def status(self, run_dir: Path) -> RunSummary:
        summary, client = self._argo_summary(run_dir)
        if summary.status in ("Succeeded", "Failed"):
            return summary
        return self._refresh(run_dir, summary, client)

    def wait(self, run_dir: Path, timeout_s: float | None = None) -> RunSummary:
        summary, client = self._argo_summary(run_dir)
        return self._follow(run_dir, summary, client, None, timeout_s)

    def logs(self, run_dir: Path, step: str | None = None) -> str:
        summary, client = self._argo_summary(run_dir)
        assert summary.argo is not None
        if step is None:
            return client.logs(summary.argo.name)
        if step not in summary.steps:
            raise UsageError(f"{run_dir}: no step {step!r} (steps: {', '.join(summary.steps)})")
        workflow = client.get(summary.argo.name)
        pods = [
            pod_name(summary.argo.name, node)
            for node in _nodes(workflow)
            if node.get("type") == "Pod" and str(node.get("displayName", "")).split("(")[0] == step
        ]
        if not pods:
            raise UsageError(f"{run_dir}: step {step!r} has no pod yet (phase {summary.steps[step].phase})")
        return "\n".join(client.logs(summary.argo.name, pod) for pod in pods)

    def resubmit(self, run_dir: Path) -> RunSummary:
        """Run the workflow again as a new Argo workflow (Argo's resubmit); the run directory follows it."""
        summary, client = self._argo_summary(run_dir)
        if summary.status in ("Pending", "Running"):
            raise UsageError(f"{run_dir}: still running (stop it first with `lamflow stop`)")
        assert summary.argo is not None
        summary.argo = _run_ref(client, client.resubmit(summary.argo.name)["metadata"]["name"])
        summary.status, summary.error, summary.finished_at, summary.wall_time_s = "Running", None, None, None
        summary.attempts += 1
        for record in summary.steps.values():
            record.phase, record.error, record.started_at, record.finished_at = "Pending", None, None, None
            record.duration_s = None
            record.parameters = {}
        summary.write(run_dir)
        return summary

    def download(
        self,
        run_dir: Path,
        step: str | None = None,
        out_dir: Path | None = None,
        wanted: Callable[[str, str], bool] | None = None,
    ) -> list[Path]:
        """Fetch finished steps' output artifacts from the artifact repository (the store's bucket) into
        ``<out_dir or run_dir>/steps/<key>/outputs/artifacts/<name>``, the layout of a local run; into the
        run directory, the steps' ``outputs`` are recorded too. ``wanted(step, output)`` limits it to some
        outputs (and leaves the pods' logs). Returns what was written."""
        from lamflow.workflows.store.locate import s3_store

        summary, client = self._argo_summary(run_dir)
        assert summary.argo is not None
        if step is not None and step not in summary.steps:
            raise UsageError(f"{run_dir}: no step {step!r} (steps: {', '.join(summary.steps)})")
        backend = s3_store(self.settings, "downloading Argo outputs")
        target = out_dir or run_dir
        into_run = target.resolve() == run_dir.resolve()  # record outputs only where the run lives
        workflow = client.get(summary.argo.name)
        written: list[Path] = []
        groups = _groups(summary)
        for node in _nodes(workflow):
            name = str(node.get("displayName", "")).split("(")[0]
            grouped = name in groups
            if node.get("type") != "Pod" or not (grouped or name in summary.steps):
                continue
            if not grouped and node.get("phase") != "Succeeded":
                continue
            members = groups[name] if grouped else [name]
            for artifact in (node.get("outputs") or {}).get("artifacts") or []:
                s3 = artifact.get("s3") or {}
                if not s3.get("key"):
                    continue
                if artifact["name"] == "main-logs":  # archived pod log (archiveLogs): the steps' log.txt
                    keys = [k for k in members if step in (None, k) and wanted is None]
                    if keys:
                        written += self._logs_into(backend, s3, target, keys)
                    continue
                # a group's outputs are named <step>--<output>
                key, output = artifact["name"].split("--", 1) if grouped else (name, artifact["name"])
                if (
                    key not in members
                    or step not in (None, key)
                    or not (wanted is None or wanted(key, output))
                ):
                    continue
                artifacts = target / "steps" / key / "outputs" / "artifacts"
                bucket = s3.get("bucket") or backend.bucket
                written.append(_fetch(backend, bucket, s3["key"], artifacts, output))
                if into_run:
                    found = resolve_output(artifacts / output)
                    summary.steps[key].outputs[output] = os.path.relpath(found, run_dir)
        if into_run:
            if summary.loops:  # the loops' labelled data, now in the run directory
                summary.loops = argo_loop_records(run_dir, summary)
            summary.write(run_dir)
        return written

    @staticmethod
    def _logs_into(backend: Any, s3: dict[str, Any], target: Path, keys: list[str]) -> list[Path]:
        """An archived pod log as the ``log.txt`` of each of the pod's steps."""
        import shutil

        folder = target / "steps" / keys[0] / "outputs" / "artifacts"
        fetched = _fetch(backend, s3.get("bucket") or backend.bucket, s3["key"], folder, "main-logs")
        logs = sorted(p for p in ([fetched] if fetched.is_file() else fetched.rglob("*")) if p.is_file())
        written = []
        for key in keys:
            log = target / "steps" / key / "log.txt"
            log.parent.mkdir(parents=True, exist_ok=True)
            with log.open("wb") as sink:
                for part in logs:
                    with part.open("rb") as source:
                        shutil.copyfileobj(source, sink)
            written.append(log)
        return written

    def running(self, run_dir: Path) -> bool:
        return self.status(run_dir).status in ("Pending", "Running")

    def stop(self, run_dir: Path) -> None:
        summary, client = self._argo_summary(run_dir)
        if summary.status not in ("Pending", "Running"):
            raise UsageError(f"{run_dir}: not running (status {summary.status})")
        assert summary.argo is not None
        client.stop(summary.argo.name)


def _run_ref(client: ArgoClient, name: str) -> ArgoRun:
    return ArgoRun(server=client.server, namespace=client.namespace, name=name, ui=client.ui_link(name))


JOB_PART = re.compile(r"^(?P<key>.+)-(stage|job)$")  # a step that runs as a PyTorchJob: its parts
LOOP_STEP = re.compile(r"-i[0-9]{3}-")  # the iteration in the key of a loop's step (compile/plan.py)


def _step_key(node: dict[str, Any]) -> str:
    """The step a node runs: its ``dflow_key`` (a loop's steps carry their iteration there; the task name
    is the same in every iteration), else its task name."""
    for parameter in (node.get("inputs") or {}).get("parameters") or []:
        if parameter.get("name") == "dflow_key" and parameter.get("value"):
            return str(parameter["value"])
    return str(node.get("displayName", ""))


def _apply_job(record: StepRecord, parts: list[dict[str, Any]]) -> None:
    """A training step that runs as a PyTorchJob (workflows/argo/kubeflow.py), while its stage and job
    tasks run: Running from the stage on, Failed with the message of a part that failed."""
    failed = [n for n in parts if n.get("phase") in ("Failed", "Error")]
    if failed:
        record.phase = "Failed"
        record.error = failed[0].get("message") or f"Argo node {failed[0].get('displayName')} failed"
    elif parts:
        record.phase = "Running"
        record.summary = "training job across nodes (Kubeflow PyTorchJob)"
    record.started_at = _first_start(parts) or record.started_at


def _first_start(nodes: list[dict[str, Any]]) -> str | None:
    starts = sorted(str(n["startedAt"]) for n in nodes if n.get("startedAt"))
    return starts[0] if starts else None


def _nodes(workflow: dict[str, Any]) -> list[dict[str, Any]]:
    """The workflow's node records (one per task attempt, retry and DAG)."""
    return list(((workflow.get("status") or {}).get("nodes") or {}).values())


def _take_times(record: Any, node: dict[str, Any]) -> None:
    """A node's start and end into a step record, and the duration between them."""
    record.started_at = node.get("startedAt") or record.started_at
    record.finished_at = node.get("finishedAt") or record.finished_at
    if record.started_at and record.finished_at:
        record.duration_s = round(_seconds(record.finished_at) - _seconds(record.started_at), 2)


def _groups(summary: RunSummary) -> dict[str, list[str]]:
    """Group name -> its steps (a grouped Argo run runs each group in one pod)."""
    found: dict[str, list[str]] = {}
    for key, record in summary.steps.items():
        if record.group:
            found.setdefault(record.group, []).append(key)
    return found


def _apply_group(summary: RunSummary, keys: list[str], node: dict[str, Any]) -> None:
    """A group's pod into its steps' records: each step's own phase and error (the ``phases`` output),
    its metrics (``<step>--metrics``), and the pod's times."""
    outputs = {p["name"]: p.get("value") for p in (node.get("outputs") or {}).get("parameters") or []}
    phases = _value(outputs.get("phases")) or {}
    for key in keys:
        record = summary.steps[key]
        own = phases.get(key) if isinstance(phases, dict) else None
        if own:
            record.phase = PHASES.get(own.get("phase", ""), record.phase)  # type: ignore[assignment]
            record.error = own.get("error") or record.error
        elif node.get("phase") in ("Pending", "Running"):
            record.phase = PHASES[node["phase"]]  # type: ignore[assignment]
        elif node.get("phase") in ("Failed", "Error"):
            record.phase, record.error = "Failed", node.get("message") or f"step group {node.get('phase')}"
        elif node.get("phase") == "Succeeded":
            record.phase = "Succeeded"
        _take_times(record, node)
        metrics = outputs.get(f"{key}--metrics")
        if metrics not in (None, "", "{}"):
            record.parameters["metrics"] = _value(metrics)


def _fetch(backend: Any, bucket: str, key: str, artifacts: Path, name: str) -> Path:
    """One output artifact: a .tgz (Argo's default archive) is unpacked to ``artifacts/<name>``."""
    import shutil
    import tarfile
    import tempfile

    artifacts.mkdir(parents=True, exist_ok=True)
    destination = artifacts / name
    if not key.endswith((".tgz", ".tar.gz")):
        destination.mkdir(exist_ok=True)
        path = destination / key.rsplit("/", 1)[-1]
        backend.client.download_file(bucket, key, str(path))
        return path
    with tempfile.NamedTemporaryFile(suffix=".tgz") as archive:
        backend.client.download_file(bucket, key, archive.name)
        with tarfile.open(archive.name) as tar:
            members = tar.getmembers()
            top = {m.name.split("/", 1)[0] for m in members}
            # Argo archives a folder under its own (artifact) name: its content goes to artifacts/<name>
            strip = len(top) == 1 and all("/" in m.name or m.isdir() for m in members)
            for member in members:  # regular files and folders inside the destination only
                parts = Path(member.name).parts
                if member.name.startswith("/") or ".." in parts or not (member.isfile() or member.isdir()):
                    raise UsageError(f"s3://{bucket}/{key}: refusing archive member {member.name!r}")
            for member in members:
                relative = Path(*Path(member.name).parts[1:]) if strip else Path(member.name)
                target = destination / relative
                if member.isdir():
                    target.mkdir(parents=True, exist_ok=True)
                    continue
                target.parent.mkdir(parents=True, exist_ok=True)
                source = tar.extractfile(member)
                assert source is not None
                with source, target.open("wb") as sink:
                    shutil.copyfileobj(source, sink)
    return destination


def pod_name(workflow: str, node: dict[str, Any]) -> str:
    """A step's pod (Argo >= 3.4 names pods ``<workflow>-<template>-<node id suffix>``)."""
    node_id = str(node.get("id", ""))
    template = node.get("templateName")
    if not template or not node_id.startswith(f"{workflow}-"):
        return node_id
    return f"{workflow}-{template}-{node_id.rsplit('-', 1)[1]}"


def _seconds(stamp: str) -> float:
    return datetime.fromisoformat(stamp.replace("Z", "+00:00")).timestamp()


def _value(text: Any) -> Any:
    if not isinstance(text, str):
        return text
    try:
        return json.loads(text)
    except ValueError:
        return text
