"""Training across nodes on Argo as a Kubeflow PyTorchJob (training-operator v1.9): the one module for it.

A training step with ``resources.<class>.nodes`` > 1 becomes three DAG tasks (ops/job.py says what runs):
``<key>-stage`` (the step's inputs into the store), ``<key>-job`` (an Argo ``resource`` template that
creates the PyTorchJob, owned by the workflow, and waits for it) and ``<key>`` (the outputs back, under the
step's own name, so every later task reads them as before).

**Why PyTorchJob v1 and not Trainer v2's TrainJob.** Both are in ``../shared/data/kubeflow``. PyTorchJob
is the operator's stable ``v1`` API, installed on most clusters that run Kubeflow training today, and its
``elasticPolicy`` configures torchrun's c10d rendezvous in every pod (``PET_RDZV_ENDPOINT``,
``PET_NNODES`` …), which :func:`lamflow.ops.dp.launcher` reads. TrainJob is ``v1alpha1``, needs JobSet and
a ClusterTrainingRuntime installed beside it, and its API may still change. Switching is this module.

The job: ``nodes`` Worker replicas (no Master: with c10d every pod is alike), ``nprocPerNode`` = GPUs per
node, ``elasticPolicy`` with ``minReplicas = maxReplicas = nodes`` (the data-parallel batch must not change
size mid-run), pods restarted on failure (``backoffLimit`` = the class's retries) and continuing from the
newest checkpoint in the store. The step succeeds when a worker succeeded — a pod exits 0 only once the
pod that held rank 0 has published the outputs — and fails when one failed for good.
"""

from __future__ import annotations

from typing import Any

from lamflow.workflows.argo.resources import PodResources, pod_fields

OPERATOR_VERSION = "v1.9.0"  # deploy/kubeflow installs this release
API_VERSION = "kubeflow.org/v1"
KIND = "PyTorchJob"
REPLICA = "Worker"
CONTAINER = "pytorch"  # the container name the operator expects in a PyTorchJob's pods
SUCCESS = f"status.replicaStatuses.{REPLICA}.succeeded > 0"
FAILURE = f"status.replicaStatuses.{REPLICA}.failed > 0"
MAX_TORCHRUN_RESTARTS = 3  # torchrun restarts its processes this often before the pod fails
POD_FIELDS = ("nodeSelector", "tolerations", "priorityClassName")  # of a step's template, kept in the job


def job_manifest(
    op: str,
    nodes: int,
    pod: PodResources,
    image: str,
    env: list[dict[str, Any]],
    labels: dict[str, str],
) -> dict[str, Any]:
    """The PyTorchJob of one training step; ``{{inputs.parameters.job}}`` is the job's store prefix."""
    container_fields, template_fields = pod_fields(pod)  # as a one-pod step of the class would get
    container = {
        "name": CONTAINER,
        "image": image,
        "command": ["python3", "-m", "lamflow.ops.job", op, "{{inputs.parameters.job}}"],
        "env": env,
        "resources": container_fields["resources"],
    }
    spec: dict[str, Any] = {"containers": [container]}
    for key in POD_FIELDS:  # placement; retries and deadlines are the job's (runPolicy), not the pod's
        if key in template_fields:
            spec[key] = template_fields[key]
    run_policy: dict[str, Any] = {"cleanPodPolicy": "None", "backoffLimit": pod.retries}
    if pod.deadline_s:
        run_policy["activeDeadlineSeconds"] = pod.deadline_s
    return {
        "apiVersion": API_VERSION,
        "kind": KIND,
        "metadata": {"generateName": "{{workflow.name}}-{{inputs.parameters.dflow_key}}-", "labels": labels},
        "spec": {
            "nprocPerNode": str(max(1, pod.gpus)),
            "elasticPolicy": {
                "rdzvBackend": "c10d",
                "minReplicas": nodes,
                "maxReplicas": nodes,
                "maxRestarts": MAX_TORCHRUN_RESTARTS,
            },
            "runPolicy": run_policy,
            "pytorchReplicaSpecs": {
                REPLICA: {
                    "replicas": nodes,
                    "restartPolicy": "OnFailure",
                    "template": {"metadata": {"labels": labels}, "spec": spec},
                }
            },
        },
    }


def job_template(name: str, manifest: str) -> dict[str, Any]:
    """The Argo ``resource`` template that creates the job (``manifest``: its YAML), owned by the workflow,
    and waits for it."""
    return {
        "name": name,
        "inputs": {"parameters": [{"name": "job"}, {"name": "dflow_key"}]},
        "resource": {
            "action": "create",
            "setOwnerReference": True,  # deleting the workflow deletes the job and its pods
            "successCondition": SUCCESS,
            "failureCondition": FAILURE,
            "manifest": manifest,
        },
        "outputs": {"parameters": [{"name": "job-name", "valueFrom": {"jsonPath": "{.metadata.name}"}}]},
        "metadata": {"labels": {"lamflow.io/op": name}},
    }


def split_task(task: dict[str, Any], stage: str, job: str, collect: str) -> list[dict[str, Any]]:
    """One training task as its three: stage, job, and collect under the task's own name."""
    key = task["name"]
    stage_task = {**task, "name": f"{key}-stage", "template": stage}
    handle = "{{tasks." + f"{key}-stage" + ".outputs.parameters.job}}"
    parameters = [{"name": "job", "value": handle}, {"name": "dflow_key", "value": key}]
    job_task = {
        "name": f"{key}-job",
        "template": job,
        "arguments": {"parameters": parameters, "artifacts": []},
        "depends": f"({key}-stage.Succeeded)",
    }
    collect_task = {
        "name": key,
        "template": collect,
        "arguments": {"parameters": [dict(p) for p in parameters], "artifacts": []},
        "depends": f"({key}-job.Succeeded)",
    }
    return [stage_task, job_task, collect_task]
