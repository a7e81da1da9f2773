"""Read a spec file: strict YAML (no duplicate keys, bounded depth) -> the pydantic :class:`Spec`.

Pure parsing: nothing but the spec file is read. Every failure is a :class:`SpecError` whose message is one
line: ``<file>: <yaml.path>: <what is wrong>``, in the words of a spec author (never pydantic's).
"""

from __future__ import annotations

import difflib
import typing
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ValidationError

from lamflow.workflows.errors import SpecError
from lamflow.workflows.spec.spec import Spec

# Keys renamed since an earlier release -> their new name (a pointed error instead of a guess).
RENAMED_KEYS = {"refit_bias_on": "change_bias_on"}
MAX_DEPTH = 64  # no spec needs more; deeper documents are refused before pydantic recurses into them


class _StrictLoader(getattr(yaml, "CSafeLoader", yaml.SafeLoader)):  # type: ignore[misc]
    """SafeLoader (libyaml's parser where PyYAML has it: 1,000-dataset specs) that rejects duplicate
    mapping keys (PyYAML silently keeps the last one)."""


def _construct_mapping(loader: _StrictLoader, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
    seen: dict[Any, Any] = {}
    for key_node, _ in node.value:
        key = loader.construct_object(key_node, deep=deep)
        if key in seen:
            mark = key_node.start_mark
            raise yaml.constructor.ConstructorError(
                None, None, f"duplicate key {key!r} (line {mark.line + 1})", mark
            )
        seen[key] = True
    return yaml.SafeLoader.construct_mapping(loader, node, deep=deep)


_StrictLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_mapping)


def read_yaml(path: Path, shown: str) -> dict[str, Any]:
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise SpecError(shown, None, "no such file") from None
    except IsADirectoryError:
        raise SpecError(shown, None, "is a directory, not a spec file") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise SpecError(shown, None, f"cannot read: {exc}") from None
    try:
        data = yaml.load(text, Loader=_StrictLoader)  # noqa: S506 - a SafeLoader subclass
    except RecursionError:
        raise SpecError(
            shown, None, f"invalid YAML: nested too deeply (more than {MAX_DEPTH} levels)"
        ) from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None) or getattr(exc, "context_mark", None)
        where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark else ""
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        if "maximum nesting depth" in problem:  # libyaml's own limit (1,000 levels)
            raise SpecError(
                shown, None, f"invalid YAML: nested too deeply (more than {MAX_DEPTH} levels)"
            ) from None
        raise SpecError(shown, None, f"invalid YAML: {where}{problem}") from None
    if not isinstance(data, dict):
        raise SpecError(shown, None, "the spec must be a YAML mapping (name:, datasets:, stages: ...)")
    too_deep = _too_deep(data)
    if too_deep is not None:
        raise SpecError(shown, too_deep, f"nested too deeply (more than {MAX_DEPTH} levels)")
    return data


def _too_deep(node: Any) -> str | None:
    """The YAML path of the first place nested beyond MAX_DEPTH, else None (iterative: no recursion)."""
    stack: list[tuple[Any, tuple[Any, ...]]] = [(node, ())]
    while stack:
        value, loc = stack.pop()
        if len(loc) > MAX_DEPTH:
            return yaml_path(loc[:MAX_DEPTH])
        if isinstance(value, dict):
            stack.extend((v, (*loc, k)) for k, v in value.items())
        elif isinstance(value, list):
            stack.extend((v, (*loc, i)) for i, v in enumerate(value))
    return None


def yaml_path(loc: tuple[Any, ...]) -> str:
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += ("." if out else "") + str(part)
    return out or "(top level)"


def _allowed_keys(model: Any, loc: tuple[Any, ...]) -> list[str]:
    """Field names (aliases) allowed at ``loc`` in the spec model tree, best effort for suggestions."""
    current: Any = model
    for part in loc[:-1]:
        if isinstance(part, int) or current is None:
            continue
        fields = getattr(current, "model_fields", None)
        if fields is None:
            return []
        if part not in {f.alias or n for n, f in fields.items()}:
            # a free-form key (dict entry, e.g. a head name): step into the dict's value type
            continue
        info = next(f for n, f in fields.items() if (f.alias or n) == part)
        current = _model_in(info.annotation, BaseModel)
    fields = getattr(current, "model_fields", None)
    return sorted(f.alias or n for n, f in fields.items()) if fields else []


def _model_in(annotation: Any, base: type) -> Any:
    if isinstance(annotation, type) and issubclass(annotation, base):
        return annotation
    for arg in typing.get_args(annotation):
        found = _model_in(arg, base)
        if found is not None:
            return found
    return None


def _describe(error: Any) -> str:  # a pydantic ErrorDetails
    kind = error["type"]
    loc = error["loc"]
    if kind == "extra_forbidden":
        key = loc[-1]
        if key in RENAMED_KEYS:
            return f"unknown key {key!r} (renamed to {RENAMED_KEYS[key]!r}; see CHANGELOG.md)"
        hint = difflib.get_close_matches(str(key), _allowed_keys(Spec, loc), n=1)
        return f"unknown key {key!r}" + (f" (did you mean {hint[0]!r}?)" if hint else "")
    if kind == "missing":
        return "required key is missing"
    message = _user_message(kind, error.get("ctx") or {}, error["msg"])
    value = error.get("input")
    if kind not in ("model_type", "dict_type") and isinstance(value, str | int | float | bool):
        shown = repr(value) if len(repr(value)) < 60 else repr(value)[:57] + "..."
        if isinstance(value, str) and kind.endswith(("_type", "_parsing")):
            shown += ", text"  # e.g. steps: "2" -- quoted in YAML
        message += f" (got {shown})"
    return message


# pydantic error types -> what a spec author needs to read (no pydantic type names, no regexes)
_MESSAGES = {
    "int_type": "expected a whole number",
    "int_parsing": "expected a whole number",
    "int_from_float": "expected a whole number",
    "float_type": "expected a number",
    "float_parsing": "expected a number",
    "finite_number": "expected a finite number (not .inf or .nan)",
    "string_type": "expected text",
    "bool_type": "expected true or false",
    "bool_parsing": "expected true or false",
    "list_type": "expected a list",
    "dict_type": "expected a mapping (key: value entries)",
    "model_type": "expected a mapping (key: value entries)",
    "path_type": "expected a file path",
    "string_pattern_mismatch": "expected a name of letters, digits, '.', '_', '-' (first a letter or digit)",
}


def _user_message(kind: str, ctx: dict[str, Any], fallback: str) -> str:
    if kind in _MESSAGES:
        return _MESSAGES[kind]
    bounds = {
        "greater_than_equal": ("at least", "ge"),
        "greater_than": ("greater than", "gt"),
        "less_than_equal": ("at most", "le"),
        "less_than": ("less than", "lt"),
    }
    if kind in bounds:
        words, key = bounds[kind]
        return f"must be {words} {ctx.get(key)}"
    if kind == "literal_error":
        return f"must be {ctx.get('expected')}"
    if kind == "too_short":
        n = ctx.get("min_length")
        return f"needs at least {n} {'entry' if n == 1 else 'entries'}"
    if kind == "string_too_long":
        return f"at most {ctx.get('max_length')} characters"
    if kind == "value_error":
        return fallback.removeprefix("Value error, ")
    return fallback


def validate_data(data: dict[str, Any], shown: str) -> Spec:
    try:
        return Spec.model_validate(data)
    except ValidationError as exc:
        errors = exc.errors()
        # an unknown key first: a misspelt key also makes the key it was meant to be "missing"
        first = next((e for e in errors if e["type"] == "extra_forbidden"), errors[0])
        more = f" (+{len(errors) - 1} more)" if len(errors) > 1 else ""
        raise SpecError(shown, yaml_path(tuple(first["loc"])), _describe(first) + more) from None


def parse_spec(path: str | Path) -> tuple[Spec, str]:
    """(the validated spec, the file as the user named it) of a spec file; :class:`SpecError` otherwise."""
    shown = str(path)
    return validate_data(read_yaml(Path(path), shown), shown), shown
