"""JSON Schema of the spec format (committed as schemas/lamflow.schema.json; a test keeps it current)."""

from __future__ import annotations

import json

from lamflow.workflows.spec.spec import Spec

SCHEMA_ID = "https://lamflow.dev/schemas/lamflow.schema.json"


def spec_schema() -> dict:
    schema = Spec.model_json_schema(by_alias=True)
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$id": SCHEMA_ID,
        **schema,
        "title": "lamflow spec",
    }


def spec_schema_json() -> str:
    return json.dumps(spec_schema(), indent=2, sort_keys=True) + "\n"
