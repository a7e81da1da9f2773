"""Load a spec file: strict YAML -> pydantic -> cross-references -> datasets on disk -> ResolvedSpec.

Every failure is a :class:`SpecError` whose message is one line: ``<file>: <yaml.path>: <what is wrong>``.
Loading reads the file system (datasets are inspected) but writes nothing.
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from lamflow.ops.data import DatasetError, DatasetInfo, inspect_dataset
from lamflow.workflows.errors import SpecError
from lamflow.workflows.spec.base import slug
from lamflow.workflows.spec.finetune import RANDOM_HEAD
from lamflow.workflows.spec.spec import Spec


@dataclass(frozen=True)
class ResolvedSpec:
    """A validated spec with everything the compiler needs from the file system already read."""

    spec: Spec
    source: str  # the spec file as given by the user (for messages)
    base_dir: Path
    dataset_paths: dict[str, Path]  # absolute
    dataset_info: dict[str, DatasetInfo]
    dataset_type_maps: dict[str, list[str] | None]  # explicit overrides to hand to the ops
    type_map: list[str]  # the model's element list
    model_files: dict[str, Path] = field(default_factory=dict)  # finetune name -> absolute .pt path


class _StrictLoader(yaml.SafeLoader):
    """SafeLoader that rejects duplicate mapping keys (PyYAML silently keeps the last one)."""


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
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None) or getattr(exc, "context_mark", None)
        where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark else ""
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise SpecError(shown, None, f"invalid YAML: {where}{problem}") from None
    if not isinstance(data, dict):
        raise SpecError(shown, None, "the spec must be a YAML mapping (name:, datasets:, stages: ...)")
    return data


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
    from pydantic import BaseModel

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
    import typing

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
        hint = difflib.get_close_matches(str(key), _allowed_keys(Spec, loc), n=1)
        return f"unknown key {key!r}" + (f" (did you mean {hint[0]!r}?)" if hint else "")
    if kind == "missing":
        return "required key is missing"
    message = error["msg"]
    if kind == "value_error":
        message = message.removeprefix("Value error, ")
    value = error.get("input")
    if (
        kind not in ("model_type", "dict_type")
        and isinstance(value, str | int | float | bool)
        and len(str(value)) < 60
    ):
        message += f" (got {value!r})"
    return message


def validate_data(data: dict[str, Any], shown: str) -> Spec:
    try:
        return Spec.model_validate(data)
    except ValidationError as exc:
        errors = exc.errors()
        first = errors[0]
        more = f" (+{len(errors) - 1} more)" if len(errors) > 1 else ""
        raise SpecError(shown, yaml_path(tuple(first["loc"])), _describe(first) + more) from None


def _known(names: Any) -> str:
    names = list(names)
    return ", ".join(names) if names else "none"


def check_references(spec: Spec, shown: str) -> None:
    """Names used in stages must exist; step keys derived from names must not collide."""
    datasets = spec.datasets

    def need_dataset(path: str, name: str) -> None:
        if name not in datasets:
            hint = difflib.get_close_matches(name, list(datasets), n=1)
            extra = f"; did you mean {hint[0]!r}?" if hint else ""
            raise SpecError(shown, path, f"unknown dataset {name!r} (datasets: {_known(datasets)}{extra})")

    def unique_slugs(kind: str, path: str, names: list[str]) -> None:
        seen: dict[str, str] = {}
        for name in names:
            key = slug(name)
            if key in seen:
                raise SpecError(
                    shown, path, f"{kind} names {seen[key]!r} and {name!r} give the same step key {key!r}"
                )
            seen[key] = name

    unique_slugs("dataset", "datasets", list(datasets))
    stages = spec.stages
    heads: dict[str, Any] = {}
    if stages.pretrain is not None:
        heads = dict(stages.pretrain.heads)
        unique_slugs("head", "stages.pretrain.heads", list(heads))
        for head, head_spec in heads.items():
            base = f"stages.pretrain.heads.{head}"
            if head.lower() == RANDOM_HEAD:
                raise SpecError(shown, base, f"{head!r} is reserved by DeePMD-kit for a random fitting net")
            for i, name in enumerate(head_spec.datasets):
                need_dataset(f"{base}.datasets[{i}]", name)
            for i, name in enumerate(head_spec.validation):
                need_dataset(f"{base}.validation[{i}]", name)

    finetunes: dict[str, Any] = {}
    for i, ft in enumerate(stages.finetune):
        base = f"stages.finetune[{i}]"
        if ft.name in finetunes:
            raise SpecError(shown, f"{base}.name", f"duplicate finetune name {ft.name!r}")
        finetunes[ft.name] = ft
        src = ft.from_
        if src.model_file is None:
            if stages.pretrain is None:
                raise SpecError(
                    shown,
                    f"{base}.from",
                    "no pretrain stage to start from: add stages.pretrain or give from.model_file",
                )
            if src.head is None:
                if len(heads) > 1:
                    raise SpecError(
                        shown,
                        f"{base}.from.head",
                        f"required for a multi-task pretrain: one of {_known(heads)} or '{RANDOM_HEAD}'",
                    )
            elif src.head != RANDOM_HEAD and src.head not in heads:
                raise SpecError(
                    shown,
                    f"{base}.from.head",
                    f"no pretrain head {src.head!r} (heads: {_known(heads)}, or '{RANDOM_HEAD}')",
                )
        elif src.model_file.suffix != ".pt":
            raise SpecError(
                shown,
                f"{base}.from.model_file",
                f"{src.model_file}: fine-tuning needs a DeePMD-kit training checkpoint (.pt); "
                "frozen .pth models cannot be fine-tuned",
            )
        for j, name in enumerate(ft.datasets):
            need_dataset(f"{base}.datasets[{j}]", name)
        for j, name in enumerate(ft.validation):
            need_dataset(f"{base}.validation[{j}]", name)
    unique_slugs("finetune", "stages.finetune", list(finetunes))

    for i, group in enumerate(stages.test):
        base = f"stages.test[{i}]"
        for j, ref in enumerate(group.models):
            stage, _, name = ref.partition(".")
            if stage == "pretrain" and name not in heads:
                raise SpecError(
                    shown, f"{base}.models[{j}]", f"no pretrain head {name!r} (heads: {_known(heads)})"
                )
            if stage == "finetune" and name not in finetunes:
                raise SpecError(
                    shown,
                    f"{base}.models[{j}]",
                    f"no finetune named {name!r} (finetunes: {_known(finetunes)})",
                )
        for j, name in enumerate(group.datasets):
            need_dataset(f"{base}.datasets[{j}]", name)
        if group.refit_bias_on is not None:
            need_dataset(f"{base}.refit_bias_on", group.refit_bias_on)


def check_datasets(
    spec: Spec, shown: str, base_dir: Path
) -> tuple[dict[str, Path], dict[str, DatasetInfo], list[str]]:
    """Inspect every dataset; work out the element names of each and the model's type_map."""
    paths: dict[str, Path] = {}
    infos: dict[str, DatasetInfo] = {}
    elements_in_order: list[str] = []
    elements_of: dict[str, set[str]] = {}
    for name in spec.datasets:
        ds = spec.datasets[name]
        path = (base_dir / ds.path).resolve() if not ds.path.is_absolute() else ds.path
        if ds.type_map is not None and ds.format != "deepmd/npy":
            raise SpecError(shown, f"datasets.{name}.type_map", "only supported for deepmd/npy datasets")
        if ds.type_map is not None and len(set(ds.type_map)) != len(ds.type_map):
            raise SpecError(shown, f"datasets.{name}.type_map", "repeats an element")
        try:
            info = inspect_dataset(path, ds.format)
        except DatasetError as exc:
            raise SpecError(shown, f"datasets.{name}.path", str(exc)) from None
        names: set[str] = set()
        for system in info.systems:
            if ds.type_map is not None:
                if system.type_map is not None and tuple(system.type_map) != tuple(ds.type_map):
                    raise SpecError(
                        shown,
                        f"datasets.{name}.type_map",
                        f"{list(ds.type_map)} conflicts with {system.path}/type_map.raw "
                        f"{list(system.type_map)}",
                    )
                if max(system.types) >= len(ds.type_map):
                    raise SpecError(
                        shown,
                        f"datasets.{name}.type_map",
                        f"names {len(ds.type_map)} types but {system.path}/type.raw uses index "
                        f"{max(system.types)}",
                    )
                system_elements = system.elements(ds.type_map)
            elif system.type_map is None:
                raise SpecError(
                    shown,
                    f"datasets.{name}",
                    f"{system.path} has no type_map.raw: set datasets.{name}.type_map",
                )
            else:
                system_elements = system.elements()
            for element in system_elements:
                if element not in elements_in_order:
                    elements_in_order.append(element)
            names.update(system_elements)
        paths[name] = path
        infos[name] = info
        elements_of[name] = names

    type_map = list(spec.model.type_map) if spec.model.type_map is not None else elements_in_order
    if spec.model.type_map is not None:
        if len(set(type_map)) != len(type_map):
            raise SpecError(shown, "model.type_map", "repeats an element")
        for name, names in elements_of.items():
            missing = sorted(names - set(type_map))
            if missing:
                raise SpecError(
                    shown, "model.type_map", f"lacks {', '.join(missing)} used by dataset {name!r}"
                )
    return paths, infos, type_map


def resolve(spec: Spec, shown: str, base_dir: Path) -> ResolvedSpec:
    check_references(spec, shown)
    paths, infos, type_map = check_datasets(spec, shown, base_dir)
    model_files: dict[str, Path] = {}
    for i, ft in enumerate(spec.stages.finetune):
        if ft.from_.model_file is not None:
            file = ft.from_.model_file
            file = file if file.is_absolute() else (base_dir / file).resolve()
            if not file.is_file():
                raise SpecError(shown, f"stages.finetune[{i}].from.model_file", f"{file}: no such file")
            model_files[ft.name] = file
    return ResolvedSpec(
        spec=spec,
        source=shown,
        base_dir=base_dir,
        dataset_paths=paths,
        dataset_info=infos,
        dataset_type_maps={name: spec.datasets[name].type_map for name in spec.datasets},
        type_map=type_map,
        model_files=model_files,
    )


def load_spec(path: str | Path) -> ResolvedSpec:
    """Read, validate and resolve a spec file. Raises :class:`SpecError` (one line) on any problem."""
    path = Path(path)
    shown = str(path)
    data = read_yaml(path, shown)
    spec = validate_data(data, shown)
    return resolve(spec, shown, path.resolve().parent)
