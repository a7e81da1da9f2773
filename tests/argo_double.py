"""An HTTP double of the Argo Server API — not Argo. It answers the calls lamflow makes (create, get, list,
log, stop, resubmit) in the shapes the Argo Server documents, refuses a wrong bearer token with 401, and
validates every created workflow against the official Argo JSON schema (plus the key-name check), answering
400 as the server would for an invalid one. Workflows "run" by polling: each GET advances the DAG one
tick — ready tasks start, running tasks finish (or fail, for names in ``fail``) — with node records like a
controller's (``displayName``, ``type: Pod``, ``templateName``, phases, times, output parameters). A
workflow named in ``scripted`` is not advanced: its status is what the test wrote (a loop's iterations,
which this double does not run)."""

from __future__ import annotations

import itertools
import json
import re
import threading
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from tests.argo_schema import schema_errors, unknown_keys

SCHEMA_VERSION = "4.1.2"
_DEPENDS = re.compile(r"\(([^.()]+)\.Succeeded\)")


@dataclass
class Request:
    method: str
    path: str
    headers: dict[str, str]
    body: str


@dataclass
class ArgoDouble:
    token: str
    fail: set[str] = field(default_factory=set)  # task names that fail when they run
    outputs: dict[str, list[dict[str, str]]] = field(default_factory=dict)  # task -> output parameters
    artifacts: dict[str, list[dict[str, Any]]] = field(default_factory=dict)  # task -> output artifacts
    workflows: dict[str, dict[str, Any]] = field(default_factory=dict)
    requests: list[Request] = field(default_factory=list)
    invalid: list[str] = field(default_factory=list)  # schema errors of refused creates
    scripted: set[str] = field(default_factory=set)  # workflows whose status the test writes
    clock: datetime = field(default_factory=lambda: datetime(2026, 1, 1, tzinfo=timezone.utc))
    _server: ThreadingHTTPServer | None = None
    _names: Any = field(default_factory=lambda: itertools.count(1))

    @property
    def url(self) -> str:
        assert self._server is not None
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def start(self) -> ArgoDouble:
        double = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def _answer(self, status: int, body: Any, lines: bool = False) -> None:
                data = body if lines else json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def _handle(self, method: str) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length).decode() if length else ""
                double.requests.append(Request(method, self.path, dict(self.headers), body))
                if self.headers.get("Authorization") != f"Bearer {double.token}":
                    self._answer(401, {"code": 16, "message": "token not valid"})
                    return
                status, answer, lines = double.route(method, self.path, body)
                self._answer(status, answer, lines)

            def do_GET(self) -> None:  # noqa: N802
                self._handle("GET")

            def do_POST(self) -> None:  # noqa: N802
                self._handle("POST")

            def do_PUT(self) -> None:  # noqa: N802
                self._handle("PUT")

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self._server.serve_forever, args=(0.02,), daemon=True).start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()

    # --- the API -------------------------------------------------------------------------------------
    def route(self, method: str, path: str, body: str) -> tuple[int, Any, bool]:
        route = path.split("?", 1)[0].strip("/").split("/")
        if route[:3] != ["api", "v1", "workflows"] or len(route) < 4:
            return 404, {"code": 5, "message": "not found"}, False
        namespace, rest = route[3], route[4:]
        if method == "POST" and not rest:
            return self.create(namespace, json.loads(body))
        if method == "GET" and not rest:
            items = [w for w in self.workflows.values() if w["metadata"]["namespace"] == namespace]
            return 200, {"metadata": {}, "items": items or None}, False
        workflow = self.workflows.get(rest[0])
        if workflow is None or workflow["metadata"]["namespace"] != namespace:
            return 404, {"code": 5, "message": f'workflows.argoproj.io "{rest[0]}" not found'}, False
        if method == "GET" and len(rest) == 1:
            self.tick(workflow)
            return 200, workflow, False
        if method == "GET" and rest[1:] == ["log"]:
            return 200, self.log(workflow, path), True
        if method == "PUT" and rest[1:] == ["stop"]:
            self.finish(workflow, "Failed", "Stopped with strategy 'Stop'")
            return 200, workflow, False
        if method == "PUT" and rest[1:] == ["resubmit"]:
            copy = json.loads(json.dumps(workflow))
            copy["metadata"] = {
                k: v for k, v in copy["metadata"].items() if k in ("generateName", "labels", "annotations")
            }
            copy.pop("status", None)
            return self.create(namespace, {"workflow": copy})
        return 405, {"code": 12, "message": "method not allowed"}, False

    def create(self, namespace: str, body: dict[str, Any]) -> tuple[int, Any, bool]:
        workflow = body.get("workflow")
        if not isinstance(workflow, dict):
            return 400, {"code": 3, "message": "workflow missing from the request"}, False
        errors = schema_errors(workflow, SCHEMA_VERSION) + [
            f"unknown key {k}" for k in unknown_keys(workflow, SCHEMA_VERSION)
        ]
        if errors:
            self.invalid.extend(errors)
            return 400, {"code": 3, "message": "; ".join(errors)[:500]}, False
        name = (
            workflow["metadata"].get("name")
            or f"{workflow['metadata']['generateName']}{next(self._names):05d}"
        )
        workflow["metadata"].update(name=name, namespace=namespace, uid=f"uid-{name}")
        workflow["metadata"]["creationTimestamp"] = self._now()
        workflow["status"] = {"phase": "Pending", "nodes": {}, "startedAt": None}
        self.workflows[name] = workflow
        return 200, workflow, False

    # --- the simulated controller --------------------------------------------------------------------
    def _now(self) -> str:
        self.clock += timedelta(seconds=5)
        return self.clock.isoformat().replace("+00:00", "Z")

    def tasks(self, workflow: dict[str, Any]) -> list[dict[str, Any]]:
        spec = workflow["spec"]
        dag = next(t for t in spec["templates"] if t["name"] == spec["entrypoint"])
        return dag["dag"]["tasks"]

    def tick(self, workflow: dict[str, Any]) -> None:
        status = workflow["status"]
        if (
            status["phase"] in ("Succeeded", "Failed", "Error")
            or workflow["metadata"]["name"] in self.scripted
        ):
            return
        if status["phase"] == "Pending":
            status.update(phase="Running", startedAt=self._now())
            return
        nodes = status["nodes"]
        by_task = {n["displayName"]: n for n in nodes.values()}
        name = workflow["metadata"]["name"]
        for task in self.tasks(workflow):
            node = by_task.get(task["name"])
            if node is not None and node["phase"] == "Running":
                failed = task["name"] in self.fail
                node.update(phase="Failed" if failed else "Succeeded", finishedAt=self._now())
                if failed:
                    node["message"] = "Error (exit code 1)"
                outputs = {  # Argo saves the outputs of a failed pod too
                    "parameters": self.outputs.get(task["name"]),
                    "artifacts": self.artifacts.get(task["name"]),
                }
                if any(outputs.values()):
                    node["outputs"] = {k: v for k, v in outputs.items() if v}
        by_task = {n["displayName"]: n for n in nodes.values()}
        for task in self.tasks(workflow):
            if task["name"] in by_task:
                continue
            deps = _DEPENDS.findall(task.get("depends") or "")
            phases = [by_task[d]["phase"] if d in by_task else None for d in deps]
            if any(p in ("Failed", "Omitted") for p in phases):
                self._add_node(nodes, name, task, type="Skipped", phase="Omitted")
            elif all(p == "Succeeded" for p in phases):
                self._add_node(nodes, name, task, type="Pod", phase="Running", startedAt=self._now())
        phases = {n["phase"] for n in nodes.values()}
        if len(nodes) == len(self.tasks(workflow)) and "Running" not in phases:
            failed = "Failed" in phases
            self.finish(workflow, "Failed" if failed else "Succeeded", "child failed" if failed else None)

    @staticmethod
    def _add_node(nodes: dict[str, Any], workflow: str, task: dict[str, Any], **fields: Any) -> None:
        node_id = f"{workflow}-{len(nodes) + 1}"
        nodes[node_id] = {
            "id": node_id,
            "name": f"{workflow}.{task['name']}",
            "displayName": task["name"],
            "templateName": task["template"],
            **fields,
        }

    def finish(self, workflow: dict[str, Any], phase: str, message: str | None) -> None:
        status = workflow["status"]
        for node in status["nodes"].values():
            if node["phase"] == "Running":
                node.update(phase="Failed", finishedAt=self._now(), message=message or "")
        status.update(phase=phase, finishedAt=self._now())
        if message:
            status["message"] = message

    def log(self, workflow: dict[str, Any], path: str) -> bytes:
        query = dict(p.split("=", 1) for p in path.split("?", 1)[1].split("&")) if "?" in path else {}
        pod = query.get("podName")
        lines = []
        for node in workflow["status"]["nodes"].values():
            if node["type"] != "Pod":
                continue
            name = workflow["metadata"]["name"]
            pod_name = f"{name}-{node['templateName']}-{node['id'].rsplit('-', 1)[1]}"
            if pod is None or pod == pod_name:
                content = f"running {node['displayName']}"
                lines.append(json.dumps({"result": {"content": content, "podName": pod_name}}))
        return ("\n".join(lines) + "\n").encode()
