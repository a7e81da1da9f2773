"""The committed JSON Schema matches the models, and validates the example specs."""

from __future__ import annotations

import json

import jsonschema
import pytest
import yaml

from lamflow.workflows.spec.schema import spec_schema, spec_schema_json
from tests.conftest import EXAMPLES, REPO

COMMITTED = REPO / "schemas" / "lamflow.schema.json"


def test_committed_schema_is_current():
    assert COMMITTED.read_text() == spec_schema_json(), (
        "schemas/lamflow.schema.json is stale: run `lamflow schema -o schemas/lamflow.schema.json`"
    )


@pytest.mark.parametrize("example", sorted(EXAMPLES.glob("*.yaml")), ids=lambda p: p.name)
def test_examples_validate_against_the_schema(example):
    jsonschema.Draft202012Validator(spec_schema()).validate(yaml.safe_load(example.read_text()))


def test_schema_rejects_unknown_keys():
    schema = spec_schema()
    jsonschema.Draft202012Validator.check_schema(schema)
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate({"name": "x", "datasets": {}, "stages": {}, "bogus": 1}, schema)
    assert json.loads(COMMITTED.read_text())["properties"]["stages"]
