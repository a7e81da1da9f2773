"""Validate rendered Argo manifests against the official Argo Workflows JSON schema (../shared/data/argo).

The schema has no ``additionalProperties: false``, so :func:`unknown_keys` also walks the manifest and
reports every key the schema does not define (a typo such as ``imagee:`` would otherwise pass).
"""

from __future__ import annotations

import json
from functools import cache
from pathlib import Path
from typing import Any

from tests.conftest import REPO

ARGO_DIR = REPO.parent / "shared" / "data" / "argo"
WORKFLOW = "io.argoproj.workflow.v1alpha1.Workflow"


@cache
def argo_schema(version: str) -> dict[str, Any]:
    return json.loads((ARGO_DIR / f"schema.v{version}.json").read_text())


def schema_errors(manifest: dict[str, Any], version: str, kind: str = WORKFLOW) -> list[str]:
    import jsonschema

    definitions = argo_schema(version)["definitions"]
    validator = jsonschema.Draft202012Validator({"$ref": f"#/definitions/{kind}", "definitions": definitions})
    return [
        f"{'/'.join(map(str, e.absolute_path))}: {e.message[:200]}" for e in validator.iter_errors(manifest)
    ]


def unknown_keys(manifest: Any, version: str, kind: str = WORKFLOW) -> list[str]:
    definitions = argo_schema(version)["definitions"]
    found: list[str] = []

    def resolve(schema: dict[str, Any]) -> dict[str, Any]:
        while "$ref" in schema:
            schema = definitions[schema["$ref"].rsplit("/", 1)[1]]
        return schema

    def walk(node: Any, schema: dict[str, Any], path: str) -> None:
        schema = resolve(schema)
        if isinstance(node, dict):
            props = schema.get("properties")
            if props is not None:
                for key, value in node.items():
                    if key not in props:
                        found.append(f"{path}/{key}")
                    else:
                        walk(value, props[key], f"{path}/{key}")
            elif isinstance(schema.get("additionalProperties"), dict):
                for key, value in node.items():
                    walk(value, schema["additionalProperties"], f"{path}/{key}")
        elif isinstance(node, list) and isinstance(schema.get("items"), dict):
            for i, item in enumerate(node):
                walk(item, schema["items"], f"{path}[{i}]")

    walk(manifest, {"$ref": f"#/definitions/{kind}"}, "")
    return found


def argo_available() -> bool:
    return Path(ARGO_DIR / "schema.v4.1.2.json").exists()
