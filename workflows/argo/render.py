"""Render a plan as an Argo Workflow, WorkflowTemplate or CronWorkflow. Pure: no network, no credentials.

dflow builds the DAG (the same :func:`build_workflow` the local engine runs); this module turns its
document into a stable, cluster-ready one:

- template names are the ops' names (``pretrain``, ``freeze``, ``test`` ...), not dflow's random ones;
- dflow's serialised config (``config.update(...)``/``s3_config.update(...)`` in every script, which would
  carry S3 keys) is removed: pods get artifacts from the cluster's artifact repository, whose credentials
  live in a Kubernetes secret (deploy/), never in the manifest;
- every step template gets the resources of its class (``resources.py``), a retry strategy for lost pods,
  and the lamflow labels;
- staged inputs (datasets, external checkpoints) are keys in the artifact repository under
  ``<store_prefix>/inputs/``, and the keys, training step counts and spec digest are workflow parameters
  (``spec.arguments``) that can be changed from the Argo UI before a run.
"""

from __future__ import annotations

import copy
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from lamflow.ops.job import COLLECT_OPS, JOB_URI_ENV, STAGE_OPS
from lamflow.workflows.argo import kubeflow
from lamflow.workflows.argo.cron import check_schedule, check_timezone
from lamflow.workflows.argo.groups import group_tasks, group_template, pod_groups, rewrite, task_output
from lamflow.workflows.argo.loops import loop_task, loop_template
from lamflow.workflows.argo.resources import check_cluster, pod_fields, resolve
from lamflow.workflows.compile.dflow_workflow import request_id, staging_requests, template_name
from lamflow.workflows.compile.plan import DatasetBundle, LocalFile, Plan, StepOutput, StepPlan
from lamflow.workflows.dflow_config import dflow_config
from lamflow.workflows.errors import UsageError
from lamflow.workflows.settings import Settings
from lamflow.workflows.spec.resources import TRAINING_CLASSES, ResourcesSpec

API_VERSION = "argoproj.io/v1alpha1"
KINDS = {"workflow": "Workflow", "workflowtemplate": "WorkflowTemplate", "cronworkflow": "CronWorkflow"}
LABEL = "lamflow.io"
S3_SECRET = "lamflow-s3"  # the Kubernetes Secret with the store's keys (deploy/): accessKey, secretKey
# the lines of a dflow PythonOP script that load dflow's config and S3 config (endpoint and keys)
_DFLOW_CONFIG = re.compile(
    r"^(from dflow import config, jsonpickle, s3_config"
    r"|(s3_)?config\.update\(jsonpickle\.loads\(r'''.*'''\)\))\n",
    re.M,
)
_STEPS_PLACEHOLDER = "__lamflow_numb_steps__"
# the root node lists every test's metrics up to this many tests (a 1,000-test fan-out would add ~230 KB
# to the manifest for a list nobody reads in the UI: `lamflow status`/`download` show them)
MAX_UI_METRICS = 100


@dataclass(frozen=True)
class SpecIdentity:
    """What names the workflow in the cluster and the Argo UI."""

    name: str
    description: str
    sha256: str


@dataclass(frozen=True)
class RenderOptions:
    kind: str = "workflow"
    schedule: str | None = None  # cronworkflow only
    timezone: str = "UTC"
    run_id: str | None = None  # set by `submit`: the local run directory's id
    # set by `submit`: staging request id -> bucket key of the uploaded input (default: under
    # <store_prefix>/inputs/<request>, for a user who stages the inputs themselves)
    input_keys: Mapping[str, str] = field(default_factory=dict)


def to_yaml(manifest: dict[str, Any]) -> str:
    """The manifest as YAML in the order it was built (libyaml's emitter where PyYAML has it). Parts
    shared between templates (the training pods' environment) are written out in full, not as YAML
    anchors and aliases, which readers of a manifest (and some tools) do not expect."""
    import yaml

    class Dumper(getattr(yaml, "CSafeDumper", yaml.SafeDumper)):  # type: ignore[misc]
        def ignore_aliases(self, data: Any) -> bool:
            return True

    return yaml.dump(manifest, Dumper=Dumper, sort_keys=False, width=120, allow_unicode=True)


def version() -> str:
    from importlib.metadata import PackageNotFoundError
    from importlib.metadata import version as dist_version

    try:
        return dist_version("lamflow")
    except PackageNotFoundError:  # pragma: no cover - running from a source tree without install
        return "0+unknown"


def default_image(cluster_profile: str) -> str:
    """The image images/ builds for this lamflow version and cluster profile."""
    return f"lamflow-ops:{version()}-{'cuda' if cluster_profile == 'gpu' else 'cpu'}"


def label_value(text: str) -> str:
    """A Kubernetes label value (63 characters of [A-Za-z0-9._-], alphanumeric at both ends)."""
    cleaned = re.sub(r"[^A-Za-z0-9._-]+", "-", text)[:63]
    return cleaned.strip("-._")


def workflow_parameter(name: str) -> str:
    """An Argo reference to the workflow parameter ``name``."""
    return "{{workflow.parameters." + name + "}}"


def input_key(prefix: str, request: str) -> str:
    return f"{prefix}/inputs/" + re.sub(r"[^A-Za-z0-9_.-]+", "-", request).strip("-")


def input_parameter(request: str) -> str:
    """``input-<request slug>``; a split dataset's part (``name@test``) joins with ``--``, which no slug of
    a user's name contains, so ``gete@test`` and a dataset named ``gete-test`` stay two parameters."""
    pieces = (re.sub(r"[^a-z0-9]+", "-", piece).strip("-") for piece in request.lower().split("@"))
    return "input-" + "--".join(pieces)


def render(
    plan: Plan,
    resources: ResourcesSpec,
    settings: Settings,
    identity: SpecIdentity,
    options: RenderOptions | None = None,
) -> dict[str, Any]:
    """The manifest of ``options.kind``; raises UsageError (naming the option or spec field) on bad input."""
    options = options or RenderOptions()
    if options.kind not in KINDS:
        raise UsageError(f"--kind {options.kind}: expected one of {', '.join(KINDS)}")
    if options.kind == "cronworkflow":
        if not options.schedule:
            raise UsageError("--schedule: required with --kind cronworkflow (e.g. --schedule '0 3 * * 1')")
        schedule = check_schedule(options.schedule)
        timezone = check_timezone(options.timezone)
    elif options.schedule:
        raise UsageError(f"--schedule: only for --kind cronworkflow (not {options.kind})")
    classes = dict.fromkeys(step.resource for step in _all_steps(plan))  # plan order: errors name the first
    pods = {c: resolve(c, resources, settings.cluster_profile) for c in classes}
    check_cluster(resources, classes, settings)
    spec = _workflow_spec(plan, resources, settings, identity, pods, options.input_keys)
    labels = _labels(identity, options.run_id)
    annotations = {
        "workflows.argoproj.io/title": identity.name,
        "workflows.argoproj.io/description": identity.description or f"lamflow spec {identity.name}",
        f"{LABEL}/spec-sha256": identity.sha256,
        f"{LABEL}/version": version(),
    }
    kind = KINDS[options.kind]
    name = re.sub(r"[^a-z0-9-]+", "-", identity.name.lower()).strip("-")
    if kind == "Workflow":
        metadata = {"generateName": f"{name}-", "labels": labels, "annotations": annotations}
        return {"apiVersion": API_VERSION, "kind": kind, "metadata": metadata, "spec": spec}
    metadata = {"name": name, "labels": labels, "annotations": annotations}
    if kind == "WorkflowTemplate":
        spec["workflowMetadata"] = {"labels": dict(labels), "annotations": dict(annotations)}
        return {"apiVersion": API_VERSION, "kind": kind, "metadata": metadata, "spec": spec}
    cron = {
        "schedules": [schedule],
        "timezone": timezone,
        "concurrencyPolicy": "Forbid",  # a retraining never overlaps the previous one
        "startingDeadlineSeconds": 3600,
        "successfulJobsHistoryLimit": 5,
        "failedJobsHistoryLimit": 5,
        "workflowMetadata": {"labels": dict(labels), "annotations": dict(annotations)},
        "workflowSpec": spec,
    }
    return {"apiVersion": API_VERSION, "kind": kind, "metadata": metadata, "spec": cron}


def _labels(identity: SpecIdentity, run_id: str | None) -> dict[str, str]:
    labels = {
        "app.kubernetes.io/name": "lamflow",
        f"{LABEL}/spec": label_value(identity.name),
        f"{LABEL}/spec-sha256": identity.sha256[:16],
        f"{LABEL}/version": label_value(version()),
    }
    if run_id:
        labels[f"{LABEL}/run-id"] = label_value(run_id)
    return labels


def _all_steps(plan: Plan) -> list[StepPlan]:
    """The plan's steps and its loops' body steps (keyed ``<loop>/<relative key>``)."""
    body = [replace(step, key=f"{loop.key}/{step.key}") for loop in plan.loops for step in loop.body]
    return [*plan.steps, *body]


def _step_templates(plan: Plan, image: str) -> tuple[dict[str, str], list[dict[str, Any]]]:
    """Step key (``<loop>/<relative key>`` in a loop's body) -> template name, and the step templates:
    dflow's PythonOP templates, one per op and resource class, named as the local engine's workflow names
    them (``template_name``)."""
    names: dict[tuple[type, str, str | None], str] = {}
    of_step: dict[str, str] = {}
    documents = []
    for step in _all_steps(plan):
        # a step with an image of its own (the command labeler's) gets a template of its own
        kind = (step.op, step.resource, step.image)
        if kind not in names:
            document = _op_document(step.op, step.image or image)
            document["name"] = names[kind] = template_name(step, set(names.values()))
            documents.append(document)
        of_step[step.key] = names[kind]
    return of_step, documents


def dag_tasks(plan: Plan, of_step: dict[str, str], inputs: dict[str, str]) -> list[dict[str, Any]]:
    """The DAG's tasks, one per step, as dflow's Workflow would write them (tests/workflows/argo check that
    they are), built directly: dflow copies every template into every task, which for a 1,000-task
    fan-out costs seconds. ``inputs`` maps staging request ids to workflow parameter names."""
    from dflow.io import convert_value_to_str

    tasks = []
    for step in plan.steps:
        artifacts: list[dict[str, Any]] = []
        for name, source in step.artifacts.items():
            if isinstance(source, StepOutput):
                artifacts.append({"name": name, "from": task_output(source.step, "artifacts", source.name)})
            else:
                assert isinstance(source, DatasetBundle | LocalFile), (step.key, source)
                key = workflow_parameter(inputs[request_id(source)])
                artifacts.append({"name": name, "s3": {"key": key}})
        parameters = [{"name": k, "value": convert_value_to_str(v)} for k, v in step.parameters.items()]
        parameters.append({"name": "dflow_key", "value": step.key})
        task: dict[str, Any] = {
            "name": step.key,
            "template": of_step[step.key],
            "arguments": {"parameters": parameters, "artifacts": artifacts},
        }
        if step.depends:
            task["depends"] = " && ".join(f"({dep}.Succeeded)" for dep in step.depends)
        tasks.append(task)
    return tasks


def _workflow_spec(
    plan: Plan,
    resources: ResourcesSpec,
    settings: Settings,
    identity: SpecIdentity,
    pods: dict[str, Any],
    input_keys: Mapping[str, str],
) -> dict[str, Any]:
    image = settings.image or default_image(settings.cluster_profile)
    of_step, step_templates = _step_templates(plan, image)
    by_key = {step.key: step for step in _all_steps(plan)}
    template_class = {of_step[key]: step.resource for key, step in by_key.items()}

    parameters = [{"name": "spec-sha256", "value": identity.sha256, "description": "sha256 of the spec file"}]
    inputs = {rid: input_parameter(rid) for rid in staging_requests(plan)}
    for rid, parameter in sorted(inputs.items(), key=lambda kv: kv[1]):
        parameters.append(
            {
                "name": parameter,
                "value": input_keys.get(rid) or input_key(settings.store_prefix, rid),
                "description": "artifact repository key of a staged input",
            }
        )
    tasks = dag_tasks(plan, of_step, inputs)
    for task in tasks:
        steps = _expose_steps(task)
        if steps is not None:
            parameters.append(
                {"name": f"{task['name']}-steps", "value": str(steps), "description": "dp train numb_steps"}
            )
    loop_templates: list[dict[str, Any]] = []
    for loop in sorted(plan.loops, key=lambda loop: -loop.position):  # later first: positions stay right
        tasks.insert(loop.position, loop_task(loop, inputs, workflow_parameter, request_id))
        of_body = {step.key: of_step[f"{loop.key}/{step.key}"] for step in loop.body}
        loop_templates.insert(0, loop_template(loop, of_body, inputs, workflow_parameter, request_id))
    outputs = _dag_outputs(plan)
    group_templates = []
    groups = pod_groups(plan) if settings.group else {}
    if groups:  # a step group is one pod (its steps run one after another in it)
        tasks, interfaces = group_tasks(plan, tasks, groups)
        task_of = {key: group for group, keys in groups.items() for key in keys}
        for parameter in outputs["parameters"]:
            parameter["valueFrom"]["parameter"] = rewrite(parameter["valueFrom"]["parameter"], task_of)
        for artifact in outputs["artifacts"]:
            artifact["from"] = rewrite(artifact["from"], task_of)
        used = {task["template"] for task in tasks}
        used |= {task["template"] for template in loop_templates for task in template["dag"]["tasks"]}
        step_templates = [t for t in step_templates if t["name"] in used]
        for group, interface in interfaces.items():
            pod = pods[by_key[plan.groups[group][0]].resource]
            group_templates.append(_pod_template(group_template(group, interface, image), pod, [], "group"))
    job_templates: list[dict[str, Any]] = []
    across = _across_nodes(plan, resources)
    if across:
        tasks, job_templates = _as_jobs(tasks, across, by_key, pods, resources, settings, image, identity)
        used = {task["template"] for task in tasks}
        used |= {task["template"] for template in loop_templates for task in template["dag"]["tasks"]}
        step_templates = [t for t in step_templates if t["name"] in used]
    dag = {"name": f"{plan.name}-dag", "dag": {"tasks": tasks}, "outputs": outputs}
    carry = _checkpoint_env(settings)
    templates: list[dict[str, Any]] = [dag, *loop_templates]
    for template in step_templates:
        pod = pods[template_class[template["name"]]]
        templates.append(_step_template(template, pod, carry if pod.training else []))
    templates += group_templates + job_templates
    return {
        "entrypoint": dag["name"],
        "serviceAccountName": settings.argo_service_account,
        "arguments": {"parameters": parameters},
        # pods of a failed run stay for `kubectl logs`; the artifact repository keeps every step's log
        "podGC": {"strategy": "OnWorkflowSuccess"},
        "templates": templates,
    }


def _across_nodes(plan: Plan, resources: ResourcesSpec) -> dict[str, int]:
    """Training step key -> nodes, for the steps that train on more than one node (a loop's cannot yet)."""
    nodes = {}
    for step in _all_steps(plan):
        if step.resource not in TRAINING_CLASSES:
            continue
        where, profile = resources.for_class(step.resource)
        if (profile.nodes or 1) == 1:
            continue
        if "/" in step.key:
            raise UsageError(
                f"{where}.nodes: {profile.nodes}: step {step.key.split('/')[-1]} of loop "
                f"{step.key.split('/')[0]} trains in one pod per iteration on Argo (nodes > 1 is for the "
                "pretrain and finetune stages); give the loop's training a class of its own or nodes: 1"
            )
        nodes[step.key] = profile.nodes or 1
    return nodes


def _as_jobs(
    tasks: list[dict[str, Any]],
    across: dict[str, int],
    by_key: dict[str, StepPlan],
    pods: dict[str, Any],
    resources: ResourcesSpec,
    settings: Settings,
    image: str,
    identity: SpecIdentity,
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Each training task in ``across`` as stage, PyTorchJob and collect tasks (workflows/argo/kubeflow.py),
    and the templates they use (``check_cluster`` refused a store the job's pods cannot reach)."""
    credentials = _s3_env(settings)
    job_uri = settings.store.rstrip("/") + "/jobs/{{workflow.uid}}/{{inputs.parameters.dflow_key}}"
    templates: dict[str, dict[str, Any]] = {}
    out: list[dict[str, Any]] = []
    for task in tasks:
        step = by_key.get(task["name"])
        if step is None or step.key not in across:
            out.append(task)
            continue
        name = step.op.name
        if f"{name}-stage" not in templates:
            small = pods.get("default") or resolve("default", resources, settings.cluster_profile)
            stage_env = [{"name": JOB_URI_ENV, "value": job_uri}, *credentials]
            for op, env in ((STAGE_OPS[name], stage_env), (COLLECT_OPS[name], credentials)):
                document = _op_document(op, image)
                document["name"] = f"{name}-stage" if op is STAGE_OPS[name] else f"{name}-collect"
                templates[document["name"]] = _step_template(document, small, env)
        job = f"{name}-job-{across[step.key]}n"
        if job not in templates:
            pod = pods[step.resource]
            container, _ = pod_fields(pod)
            env = [*container["env"], *_checkpoint_env(settings)]
            labels = {**_labels(identity, None), f"{LABEL}/op": name}
            manifest = kubeflow.job_manifest(name, across[step.key], pod, image, env, labels)
            templates[job] = kubeflow.job_template(job, to_yaml(manifest))
        out += kubeflow.split_task(task, f"{name}-stage", job, f"{name}-collect")
    return out, list(templates.values())


def _op_document(op: type, image: str) -> dict[str, Any]:
    """An op's dflow PythonOP template as an Argo document (dflow's config still in its script)."""
    with dflow_config({"mode": "default"}, {"access_key": "", "secret_key": ""}):
        from argo.workflows.client import ApiClient
        from dflow.python import PythonOPTemplate

        template = PythonOPTemplate(op, image=image, command=["python3"], upload_dflow=False)
        return dict(ApiClient().sanitize_for_serialization(template.convert_to_argo()))


def _dag_outputs(plan: Plan) -> dict[str, Any]:
    """What the Argo UI shows on the workflow's root node: every test's metrics (one parameter per test
    step, described as "<model> on <dataset>") and every frozen model and training checkpoint as a named
    artifact that can be downloaded from there."""
    from lamflow.workflows.spec.base import model_slug

    parameters = []
    for step in plan.evaluations if len(plan.evaluations) <= MAX_UI_METRICS else ():
        assert step.evaluation is not None
        what = f"{step.evaluation.model} on {step.evaluation.dataset}"
        if step.evaluation.change_bias_on:
            what += f" (energy bias re-fitted on {step.evaluation.change_bias_on})"
        source = task_output(step.key, "parameters", "metrics")
        parameters.append(
            {
                "name": f"metrics-{step.key}",
                "description": what,
                "valueFrom": {"parameter": source, "default": "{}"},
            }
        )
    artifacts = []
    for loop in plan.loops:
        for output, suffix in (("model", "pth"), ("checkpoint", "pt")):
            if loop.model_ref is not None and output in loop.outputs:
                source = task_output(loop.key, "artifacts", output)
                artifacts.append(
                    {"name": f"{model_slug(loop.model_ref)}-{suffix}", "from": source, "optional": True}
                )
    for step in plan.steps:
        for ref, output, suffix in (
            (step.model_ref, "model", "pth"),
            (step.checkpoint_ref, "checkpoint", "pt"),
        ):
            if ref is not None:
                source = task_output(step.key, "artifacts", output)
                artifacts.append({"name": f"{model_slug(ref)}-{suffix}", "from": source, "optional": True})
    return {"parameters": parameters, "artifacts": artifacts}


def _expose_steps(task: dict[str, Any]) -> int | None:
    """Make a training task's ``numb_steps`` the workflow parameter ``<task>-steps``; returns its value."""
    for parameter in task.get("arguments", {}).get("parameters", []):
        if parameter["name"] != "deepmd_input":
            continue
        config = json.loads(parameter["value"])
        steps = config.get("training", {}).get("numb_steps")
        if not isinstance(steps, int):
            return None
        config["training"]["numb_steps"] = _STEPS_PLACEHOLDER
        text = json.dumps(config)
        parameter["value"] = text.replace(
            json.dumps(_STEPS_PLACEHOLDER), workflow_parameter(f"{task['name']}-steps")
        )
        return steps
    return None


def _checkpoint_env(settings: Settings) -> list[dict[str, Any]]:
    """Environment of training pods that carries their checkpoints to a retried pod
    (ops/training/checkpoint_sync.py): one S3 prefix per workflow and step, the keys from the cluster's
    Secret. Empty without an s3:// store (a retried training step then starts again from step 0)."""
    if not settings.store.startswith("s3://"):
        return []
    uri = settings.store.rstrip("/") + "/checkpoints/{{workflow.uid}}/{{inputs.parameters.dflow_key}}"
    return [{"name": "LAMFLOW_CHECKPOINT_URI", "value": uri}, *_s3_env(settings)]


def _s3_env(settings: Settings) -> list[dict[str, Any]]:
    """The store's credentials (from the cluster's Secret) and endpoint, for a pod that reaches S3 itself."""
    env: list[dict[str, Any]] = [
        {"name": "AWS_ACCESS_KEY_ID", "valueFrom": {"secretKeyRef": {"name": S3_SECRET, "key": "accessKey"}}},
        {
            "name": "AWS_SECRET_ACCESS_KEY",
            "valueFrom": {"secretKeyRef": {"name": S3_SECRET, "key": "secretKey"}},
        },
    ]
    if settings.argo_s3_endpoint:
        env.append({"name": "AWS_ENDPOINT_URL", "value": settings.argo_s3_endpoint})
    return env


def _step_template(template: dict[str, Any], pod: Any, extra_env: list[dict[str, Any]]) -> dict[str, Any]:
    """A dflow PythonOP template, cluster-ready: dflow's serialised config removed, resources added."""
    template = copy.deepcopy(template)
    script = template["script"]
    source, removed = _DFLOW_CONFIG.subn("", script["source"])
    if removed != 3 or "s3_config" in source or "jsonpickle.loads" in source:
        raise RuntimeError(  # pragma: no cover - a dflow release changed its script layout
            f"template {template['name']}: could not remove dflow's serialised config from the step script"
        )
    script["source"] = re.sub(r"\n{3,}", "\n\n", source).lstrip("\n")
    if not script.get("volumeMounts"):
        script.pop("volumeMounts", None)
    return _pod_template(template, pod, extra_env, template["name"])


def _pod_template(
    template: dict[str, Any], pod: Any, extra_env: list[dict[str, Any]], op: str
) -> dict[str, Any]:
    """Resources, environment, retries and labels of one pod's template."""
    script = template["script"]
    container, fields = pod_fields(pod)
    container["env"] = [*container["env"], *extra_env]
    script.update(container)
    template.update(fields)
    for key in ("initContainers", "sidecars", "volumes", "tolerations", "nodeSelector"):
        if not template.get(key):
            template.pop(key, None)
    metadata = template.setdefault("metadata", {})
    metadata["labels"] = {**(metadata.get("labels") or {}), f"{LABEL}/op": op}
    return template
