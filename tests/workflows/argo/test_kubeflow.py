"""Training across nodes on Argo (workflows/argo/kubeflow.py): the 4-node x 8-GPU example renders a
PyTorchJob that validates against the training operator's CRD (../shared/data/kubeflow, v1.9) with no key
the CRD does not define, inside a resource template valid under both Argo schemas; and what the cluster
cannot do is refused in one line, at validate with the Argo engine as at render."""

from __future__ import annotations

from functools import cache
from pathlib import Path
from typing import Any

import pytest
import yaml

from lamflow.workflows import api
from lamflow.workflows.argo import kubeflow
from lamflow.workflows.errors import UsageError
from tests.argo_schema import schema_errors, unknown_keys
from tests.conftest import EXAMPLES, REPO, minimal_spec
from tests.workflows.argo.test_render import dag_tasks, render, settings, templates

EXAMPLE = EXAMPLES / "cluster" / "pretrain-4x8.yaml"
CRD = REPO.parent / "shared" / "data" / "kubeflow" / "kubeflow.org_pytorchjobs.v1.9.0.yaml"
STORE = "s3://lab-bucket/lamflow"


@cache
def crd_schema() -> dict[str, Any]:
    (version,) = [v for v in yaml.safe_load(CRD.read_text())["spec"]["versions"] if v["name"] == "v1"]
    return version["schema"]["openAPIV3Schema"]


def crd_problems(job: dict[str, Any]) -> list[str]:
    """Schema errors, and every key the CRD does not define (its schema allows none it does not list,
    except under metadata, which Kubernetes checks itself)."""
    import jsonschema

    errors = [f"{'/'.join(map(str, e.absolute_path))}: {e.message[:200]}"
              for e in jsonschema.Draft7Validator(crd_schema()).iter_errors(job)]  # fmt: skip

    def walk(node: Any, schema: dict[str, Any], path: str) -> None:
        if isinstance(node, dict) and "properties" in schema:
            for key, value in node.items():
                if key not in schema["properties"]:
                    errors.append(f"{path}/{key}: not in the CRD")
                elif key != "metadata":
                    walk(value, schema["properties"][key], f"{path}/{key}")
        elif isinstance(node, dict) and isinstance(schema.get("additionalProperties"), dict):
            for key, value in node.items():
                walk(value, schema["additionalProperties"], f"{path}/{key}")
        elif isinstance(node, list) and isinstance(schema.get("items"), dict):
            for i, item in enumerate(node):
                walk(item, schema["items"], f"{path}[{i}]")

    walk(job, crd_schema(), "")
    return errors


@pytest.mark.parametrize("version", ["3.7.18", "4.1.2"])
@pytest.mark.parametrize("group", [False, True], ids=["ungrouped", "grouped"])
def test_the_4x8_example_renders_a_valid_pytorchjob_in_a_valid_workflow(version, group):
    manifest = render(EXAMPLE, store=STORE, group=group)
    assert schema_errors(manifest, version) == [] and unknown_keys(manifest, version) == []
    tasks = dag_tasks(manifest)
    assert [k for k in tasks if k.startswith("pretrain")] == ["pretrain-stage", "pretrain-job", "pretrain"]
    assert tasks["pretrain-job"]["depends"] == "(pretrain-stage.Succeeded)"
    assert (
        tasks["pretrain"]["depends"] == "(pretrain-job.Succeeded)"
        and tasks["pretrain"]["template"] == "pretrain-collect"
    )
    assert "pretrain" in tasks["freeze-water"]["arguments"]["artifacts"][0]["from"] if not group else True
    job_template = templates(manifest)["pretrain-job-4n"]
    resource = job_template["resource"]
    assert resource["action"] == "create" and resource["setOwnerReference"] is True
    assert resource["successCondition"] == "status.replicaStatuses.Worker.succeeded > 0"
    job = yaml.safe_load(resource["manifest"])
    assert crd_problems(job) == []
    assert (job["apiVersion"], job["kind"]) == ("kubeflow.org/v1", "PyTorchJob")
    assert job["spec"]["nprocPerNode"] == "8"
    assert job["spec"]["elasticPolicy"] == {
        "rdzvBackend": "c10d",
        "minReplicas": 4,
        "maxReplicas": 4,
        "maxRestarts": 3,
    }
    worker = job["spec"]["pytorchReplicaSpecs"]["Worker"]
    assert worker["replicas"] == 4 and worker["restartPolicy"] == "OnFailure"
    (container,) = worker["template"]["spec"]["containers"]
    assert container["name"] == "pytorch"
    assert container["command"] == [
        "python3",
        "-m",
        "lamflow.ops.job",
        "pretrain",
        "{{inputs.parameters.job}}",
    ]
    assert container["resources"]["limits"]["nvidia.com/gpu"] == "8"
    env = {e["name"]: e.get("value") or e.get("valueFrom") for e in container["env"]}
    assert (
        env["LAMFLOW_CHECKPOINT_URI"]
        == STORE + "/checkpoints/{{workflow.uid}}/{{inputs.parameters.dflow_key}}"
    )
    assert env["AWS_ACCESS_KEY_ID"] == {"secretKeyRef": {"name": "lamflow-s3", "key": "accessKey"}}
    stage_env = {e["name"]: e.get("value") for e in templates(manifest)["pretrain-stage"]["script"]["env"]}
    assert stage_env["LAMFLOW_JOB_URI"] == STORE + "/jobs/{{workflow.uid}}/{{inputs.parameters.dflow_key}}"
    assert "pretrain" not in templates(manifest), "the one-pod training template is not rendered"
    keys = [e for e in container["env"] if e["name"] in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY")]
    assert len(keys) == 2 and all("value" not in e for e in keys), "keys only by reference to the Secret"


def test_a_spec_the_cluster_cannot_run_is_refused_at_validate_and_render(tmp_path, write_spec):
    with pytest.raises(
        UsageError, match=r"^resources.pretrain.nodes: training across nodes on Argo needs an s3:// store"
    ):
        render(EXAMPLE)  # the default store is a directory
    with pytest.raises(UsageError, match=r"^resources.pretrain.nodes: training across nodes on Argo needs"):
        api.validate(EXAMPLE, settings(engine="argo"))
    api.validate(EXAMPLE, settings())  # the local engine runs nodes on this machine
    spec = minimal_spec(resources={"pretrain": {"gpus": 16}})
    with pytest.raises(
        UsageError, match=r"^resources.pretrain.gpus: 16 GPUs per pod, but the cluster's nodes have 8"
    ):
        api.validate(write_spec(spec), settings(engine="argo"))
    api.validate(write_spec(spec), settings(engine="argo", cluster_gpus_per_node=16))


def test_the_choice_of_operator_is_one_module():
    assert kubeflow.KIND == "PyTorchJob" and kubeflow.OPERATOR_VERSION == "v1.9.0"
    assert Path(kubeflow.__file__).read_text().count("PyTorchJob v1 and not Trainer v2") == 1
