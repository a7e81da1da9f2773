"""MkDocs hook: the spec reference page is generated from the committed JSON Schema of the spec
(schemas/lamflow.schema.json, itself generated from the pydantic models and checked by a test), so no
field is described twice. Replaces the marker on docs/reference.md with one table per model."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

MARKER = "<!-- spec reference: generated from schemas/lamflow.schema.json -->"
SCHEMA = Path(__file__).resolve().parents[2] / "schemas" / "lamflow.schema.json"


def _type(node: dict[str, Any]) -> str:
    if "$ref" in node:
        name = node["$ref"].rsplit("/", 1)[-1]
        return f"[{name}](#{name.lower()})"
    if "anyOf" in node:
        return " or ".join(_type(n) for n in node["anyOf"])
    if "enum" in node:
        return " \\| ".join(f"`{v}`" for v in node["enum"])
    if "const" in node:
        return f"`{node['const']}`"
    kind = node.get("type")
    if kind == "array":
        return f"list of {_type(node.get('items', {}))}"
    if kind == "object" and isinstance(node.get("additionalProperties"), dict):
        return f"mapping of name → {_type(node['additionalProperties'])}"
    if isinstance(kind, list):
        return " or ".join(kind)
    return kind or "any"


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def _table(name: str, model: dict[str, Any]) -> list[str]:
    lines = [f"## {name}", ""]
    if model.get("description"):
        lines += [_cell(model["description"]), ""]
    required = set(model.get("required", []))
    lines += ["| key | type | default | description |", "|---|---|---|---|"]
    for key, field in model.get("properties", {}).items():
        default = (
            "required"
            if key in required
            else f"`{json.dumps(field['default'])}`"
            if "default" in field
            else ""
        )
        lines.append(
            f"| `{key}` | {_cell(_type(field))} | {_cell(default)} | {_cell(field.get('description', ''))} |"
        )
    return lines + [""]


def render(schema: dict[str, Any]) -> str:
    lines = _table("Spec (the top level)", schema)
    for name, model in sorted(schema.get("$defs", {}).items()):
        if model.get("type") == "object" or "properties" in model:
            lines += _table(name, model)
    return "\n".join(lines)


def on_page_markdown(markdown: str, page: Any, config: Any, files: Any) -> str:
    if MARKER not in markdown:
        return markdown
    return markdown.replace(MARKER, render(json.loads(SCHEMA.read_text())))
