"""deploy/: every kustomization resolves, every Kubernetes object is valid for a pinned Kubernetes release
(kubernetes-validate, strict: unknown keys are errors), Argo's own configuration is valid against Argo's
schema, no credential is committed, and the names lamflow's settings and examples use exist."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml

from lamflow.workflows.argo.kubeflow import API_VERSION, KIND, OPERATOR_VERSION
from lamflow.workflows.settings import Settings
from tests.argo_schema import argo_available, schema_errors, unknown_keys
from tests.conftest import EXAMPLES, REPO

DEPLOY = REPO / "deploy"
KUBERNETES = "1.34.0"
ARGO_RELEASE = "3.7.18"
KUSTOMIZATIONS = sorted(DEPLOY.rglob("kustomization.yaml"))
OBJECT_FILES = sorted(p for p in DEPLOY.rglob("*.yaml") if p.name != "kustomization.yaml")


def documents(path: Path) -> list[dict]:
    return [d for d in yaml.safe_load_all(path.read_text()) if d]


def all_objects() -> list[tuple[Path, dict]]:
    return [(path, doc) for path in OBJECT_FILES for doc in documents(path)]


def test_there_is_a_base_argo_and_two_overlays():
    names = {p.parent.relative_to(DEPLOY).as_posix() for p in KUSTOMIZATIONS}
    assert names == {"argo", "base", "kubeflow", "overlays/lab", "overlays/production"}


@pytest.mark.parametrize(
    "kustomization", KUSTOMIZATIONS, ids=lambda p: p.parent.relative_to(DEPLOY).as_posix()
)
def test_kustomization_resolves(kustomization):
    spec = yaml.safe_load(kustomization.read_text())
    assert spec["apiVersion"] == "kustomize.config.k8s.io/v1beta1" and spec["kind"] == "Kustomization"
    if kustomization.parent.name == "kubeflow":  # the training operator, in its own namespace
        assert spec.get("namespace") == "kubeflow"
        (resource,) = spec["resources"]
        assert resource.endswith(f"/manifests/overlays/standalone?ref={OPERATOR_VERSION}"), "pinned"
        return
    assert spec.get("namespace") == Settings().argo_namespace
    for resource in spec.get("resources", []):
        if resource.startswith("https://"):
            assert f"/releases/download/v{ARGO_RELEASE}/install.yaml" in resource, (
                "remote resources are pinned"
            )
            continue
        assert (kustomization.parent / resource).exists(), f"{kustomization}: {resource} missing"
    for patch in spec.get("patches", []):
        assert (kustomization.parent / patch["path"]).is_file()
    for generator in spec.get("secretGenerator", []):
        for env_file in generator.get("envs", []):
            example = kustomization.parent / f"{env_file}.example"
            assert example.is_file(), "a generated secret's file has a committed .example"
            ignored = (REPO / ".gitignore").read_text().splitlines()
            assert (kustomization.parent / env_file).relative_to(REPO).as_posix() in ignored


@pytest.mark.parametrize(
    ("path", "obj"), all_objects(), ids=lambda x: x.name if isinstance(x, Path) else x["kind"]
)
def test_every_kubernetes_object_is_valid_for_the_pinned_release(path, obj):
    import kubernetes_validate

    kubernetes_validate.validate(obj, KUBERNETES, strict=True)  # raises on any schema error or unknown key


def test_no_credentials_are_committed():
    for path, obj in all_objects():
        if obj["kind"] == "Secret":
            assert obj.get("type") == "kubernetes.io/service-account-token" and not obj.get("data"), path
            assert not obj.get("stringData"), path
    for example in DEPLOY.rglob("*.example"):
        assert all(
            value.startswith("CHANGE-ME")
            for _, value in (line.split("=", 1) for line in example.read_text().split())
        )
    text = "\n".join(p.read_text() for p in DEPLOY.rglob("*") if p.is_file())
    assert not re.search(r"AKIA[0-9A-Z]{16}", text)


def artifact_repositories() -> list[tuple[Path, dict]]:
    found = []
    for path, obj in all_objects():
        if obj["kind"] == "ConfigMap" and obj["metadata"]["name"] == "artifact-repositories":
            default = obj["metadata"]["annotations"]["workflows.argoproj.io/default-artifact-repository"]
            found.append((path, yaml.safe_load(obj["data"][default])))
    return found


@pytest.mark.skipif(not argo_available(), reason="../shared/data/argo not present")
@pytest.mark.parametrize("version", [ARGO_RELEASE, "4.1.2"])
def test_argo_configuration_is_valid_against_argo_schema(version):
    repositories = artifact_repositories()
    assert {p.parent.name for p, _ in repositories} == {"lab", "production"}
    kind = "io.argoproj.workflow.v1alpha1.ArtifactRepository"
    for path, repository in repositories:
        assert (
            schema_errors(repository, version, kind) == [] and unknown_keys(repository, version, kind) == []
        ), path
        s3 = repository["s3"]
        from lamflow.workflows.argo.render import S3_SECRET

        assert S3_SECRET == "lamflow-s3", "training pods read the same Secret for their checkpoints"
        assert s3["accessKeySecret"] == {"name": "lamflow-s3", "key": "accessKey"}
        assert s3["secretKeySecret"] == {"name": "lamflow-s3", "key": "secretKey"}
    controller = yaml.safe_load((DEPLOY / "argo" / "workflow-controller-configmap.yaml").read_text())
    defaults = {"metadata": {}, **yaml.safe_load(controller["data"]["workflowDefaults"])}
    assert schema_errors(defaults, version) == [] and unknown_keys(defaults, version) == []
    repository = yaml.safe_load(controller["data"]["artifactRepository"])
    assert unknown_keys(repository, version, "io.argoproj.workflow.v1alpha1.ArtifactRepository") == []


def test_the_workflow_may_create_follow_and_delete_the_training_jobs_it_renders():
    """An Argo resource template acts with the workflow's ServiceAccount: its Role must cover the job kind
    workflows/argo/kubeflow.py renders."""
    (role,) = [
        obj
        for _, obj in all_objects()
        if obj["kind"] == "Role" and obj["metadata"]["name"] == "lamflow-workflow"
    ]
    group, _, _ = API_VERSION.partition("/")
    (rule,) = [r for r in role["rules"] if group in r["apiGroups"]]
    assert rule["resources"] == [KIND.lower() + "s"]
    assert {"create", "get", "watch", "delete"} <= set(rule["verbs"])


def test_names_match_lamflow_settings_and_examples():
    objects = {(obj["kind"], obj["metadata"]["name"]) for _, obj in all_objects()}
    assert ("ServiceAccount", Settings().argo_service_account) in objects
    example = yaml.safe_load((EXAMPLES / "argo-gpu.yaml").read_text())
    assert ("PriorityClass", example["resources"]["pretrain"]["priority_class"]) in objects
    (role,) = [
        o for _, o in all_objects() if o["kind"] == "Role" and o["metadata"]["name"] == "lamflow-workflow"
    ]
    rules = {
        (g, r): set(rule["verbs"])
        for rule in role["rules"]
        for g in rule["apiGroups"]
        for r in rule["resources"]
    }
    assert {"create", "patch"} <= rules[("argoproj.io", "workflowtaskresults")], (
        "the executor reports outputs"
    )
    readme = (DEPLOY / "README.md").read_text()
    for needed in ("kubectl apply -k deploy/argo", "kubectl apply -k deploy/overlays/lab", "lamflow-s3",
                   "port-forward", "lamflow submit examples/demo.yaml --engine argo"):  # fmt: skip
        assert needed in readme
