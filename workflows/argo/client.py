"""The Argo Server REST API, through the ``argo-workflows`` client on PyPI (the one dflow pins and uses).

Answers are read as JSON (``_preload_content=False``): lamflow needs a few fields of a workflow, and the
generated models of one client release break on fields a newer server adds. The bearer token travels
only in the ``Authorization`` header. Errors are one line: a refused token (401/403) or a missing
workflow is a configuration error (exit 2); a server that stays unreachable after the retries, or
answers 5xx, exits 1.
"""

from __future__ import annotations

import json
from typing import Any

from lamflow.workflows.errors import LamflowError, UsageError

RETRIES = 3


class ArgoUnreachable(LamflowError):
    """The Argo server did not answer (after retries) or failed (5xx)."""


class ArgoClient:
    def __init__(self, server: str, namespace: str, token: str | None, retries: int = RETRIES) -> None:
        from argo.workflows.client import ApiClient, Configuration, WorkflowServiceApi
        from urllib3.util.retry import Retry

        self.server = server.rstrip("/")
        self.namespace = namespace
        config = Configuration(host=self.server)
        config.retries = Retry(
            total=retries, connect=retries, read=retries, backoff_factor=0.2,
            status_forcelist=(502, 503, 504), allowed_methods=None, raise_on_status=False,
        )  # fmt: skip
        header = ("Authorization", f"Bearer {token}") if token else (None, None)
        self.api = WorkflowServiceApi(ApiClient(config, *header))

    def ui_link(self, name: str) -> str:
        """Where the Argo UI shows the workflow."""
        return f"{self.server}/workflows/{self.namespace}/{name}"

    def _call(self, what: str, method: Any, *args: Any, **kwargs: Any) -> Any:
        from argo.workflows.client.exceptions import ApiException
        from urllib3.exceptions import HTTPError

        try:
            response = method(*args, _preload_content=False, **kwargs)
        except ApiException as exc:
            detail = _message(exc.body) or str(exc.reason)
            if exc.status in (401, 403):
                raise UsageError(
                    f"LAMFLOW_ARGO_TOKEN: the Argo server at {self.server} refused it for {what} "
                    f"({exc.status} {exc.reason}: {detail})"
                ) from None
            if exc.status == 404:
                raise UsageError(
                    f"{what}: not found on {self.server} in namespace {self.namespace}"
                ) from None
            if exc.status is not None and 400 <= exc.status < 500:
                raise UsageError(f"{what}: the Argo server refused it ({exc.status}: {detail})") from None
            raise ArgoUnreachable(
                f"{what}: the Argo server at {self.server} failed ({exc.status}: {detail})"
            ) from None
        except (HTTPError, OSError) as exc:
            first = str(exc).splitlines()[0][:160]
            raise ArgoUnreachable(
                f"LAMFLOW_ARGO_SERVER={self.server}: unreachable for {what} after {RETRIES} retries ({first})"
            ) from None
        return response.data

    def _json(self, what: str, method: Any, *args: Any, **kwargs: Any) -> dict[str, Any]:
        data = self._call(what, method, *args, **kwargs)
        try:
            return json.loads(data or b"{}")
        except ValueError:
            raise ArgoUnreachable(
                f"{what}: the Argo server answered with something that is not JSON"
            ) from None

    def check(self) -> None:
        """Ask for one workflow of the namespace: the server is there and accepts the token."""
        self._json("list workflows", self.api.list_workflows, self.namespace, list_options_limit="1")

    def create(self, manifest: dict[str, Any]) -> dict[str, Any]:
        """Create a Workflow; returns it as the server stored it (with its generated name)."""
        return self._json("create workflow", self.api.create_workflow, self.namespace, {"workflow": manifest})

    def get(self, name: str) -> dict[str, Any]:
        return self._json(f"workflow {name}", self.api.get_workflow, self.namespace, name)

    def stop(self, name: str) -> dict[str, Any]:
        body = {"name": name, "namespace": self.namespace}
        return self._json(f"stop workflow {name}", self.api.stop_workflow, self.namespace, name, body)

    def resubmit(self, name: str) -> dict[str, Any]:
        body = {"name": name, "namespace": self.namespace, "memoized": False}
        return self._json(f"resubmit workflow {name}", self.api.resubmit_workflow, self.namespace, name, body)

    def logs(self, name: str, pod: str | None = None) -> str:
        """The workflow's (or one pod's) main-container log, as text."""
        kwargs: dict[str, Any] = {"log_options_container": "main"}
        if pod:
            kwargs["pod_name"] = pod
        data = self._call(f"logs of workflow {name}", self.api.workflow_logs, self.namespace, name, **kwargs)
        lines = []
        for line in (data or b"").decode("utf-8", "replace").splitlines():
            try:
                result = json.loads(line).get("result", {})
            except ValueError:
                continue
            lines.append(f"{result.get('podName', '')}: {result.get('content', '')}")
        return "\n".join(lines)


def _message(body: bytes | str | None) -> str:
    if not body:
        return ""
    try:
        return str(json.loads(body).get("message", ""))[:200]
    except (ValueError, AttributeError):
        return str(body)[:200]
