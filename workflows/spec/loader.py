"""Load a spec file: strict YAML -> pydantic -> cross-references -> datasets on disk -> ResolvedSpec.

Every failure is a :class:`SpecError` whose message is one line: ``<file>: <yaml.path>: <what is wrong>``.
Loading reads the file system (datasets are inspected) and writes nothing, except that a dataset named by
URI is fetched into the machine's dataset cache by the caller's ``fetch``.
"""

from __future__ import annotations

import difflib
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from lamflow.ops.data import DatasetError, DatasetFormat, DatasetInfo, inspect_dataset
from lamflow.workflows.errors import EXIT_BAD_INPUT, LamflowError, SpecError
from lamflow.workflows.spec.spec import Spec

Fetch = Callable[[str], Path]  # dataset URI -> verified local copy


@dataclass(frozen=True)
class ResolvedSpec:
    """A validated spec with everything the compiler needs from the file system already read."""

    spec: Spec
    source: str  # the spec file as given by the user (for messages)
    base_dir: Path
    dataset_paths: dict[str, Path]  # absolute
    dataset_info: dict[str, DatasetInfo]
    dataset_formats: dict[str, DatasetFormat]  # how steps read each dataset
    type_map: list[str]  # the model's element list
    overlaps: frozenset[tuple[str, str]] = frozenset()  # (model, dataset) tested on training data, allowed
    notices: tuple[str, ...] = ()  # what the stages' checks tell the user (not errors)
    # (model, dataset) -> elements of the dataset the model's training data never held (rows are marked)
    unlearned: dict[tuple[str, str], tuple[str, ...]] = field(default_factory=dict)
    # split datasets: name -> {system: {"train": [frame...], "test": [...]}}; their parts are datasets
    # "<name>@train" / "<name>@test" in dataset_paths, dataset_info and dataset_formats
    splits: dict[str, dict[str, dict[str, list[int]]]] = field(default_factory=dict)
    # learning-curve train subsets "<name>@train-n<N>-r<k>" -> {train-part system: [frame...]}
    subsets: dict[str, dict[str, list[int]]] = field(default_factory=dict)
    # raw-format datasets -> the sources dpdata converts, in order, each as (the file or folder it reads,
    # the files it reads beside it: a pw.x input); validate converted them into dataset_paths[name] to
    # check them, the workflow's convert-datasets step converts them again
    conversions: dict[str, tuple[tuple[Path, ...], ...]] = field(default_factory=dict)

    def part(self, name: str, role: str) -> str:
        """The dataset results name for ``role`` ('train' or 'test'): a split dataset's part, else itself."""
        return f"{name}@{role}" if name in self.splits else name


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


def check_stages(spec: Spec, shown: str, base_dir: Path) -> Any:
    """Each stage, in order, checks the names it uses and registers the models it provides; returns the
    References it filled (for the guards, once the datasets are inspected)."""
    from lamflow.workflows.stages import all_stages
    from lamflow.workflows.stages._external import check_external_models
    from lamflow.workflows.stages.base import References

    refs = References(shown=shown, base_dir=base_dir, datasets=spec.datasets, model=spec.model)
    refs.unique_slugs("dataset", "datasets", spec.datasets)
    check_external_models(spec.models, refs)
    for stage in all_stages():
        stage.check(spec.stages.section(stage.key), refs)
    _check_registry(spec, shown)
    return refs


def _check_registry(spec: Spec, shown: str) -> None:
    """The promotion gate names a dataset that some model of the spec is tested on (no change-bias)."""
    gate = spec.registry.promote_gate
    if gate is None:
        return
    if gate.dataset not in spec.datasets:
        raise SpecError(
            shown,
            "registry.promote_gate.dataset",
            f"unknown dataset {gate.dataset!r} (datasets: {', '.join(spec.datasets)})",
        )
    tested = {d for t in spec.stages.section("test") or [] if t.change_bias_on is None for d in t.datasets}
    if gate.dataset not in tested:
        raise SpecError(
            shown,
            "registry.promote_gate.dataset",
            f"no test (without change_bias_on) uses {gate.dataset!r}: no model would have the gate's metric",
        )


def guard_stages(spec: Spec, refs: Any) -> None:
    """Each stage's checks of the inspected data (``refs.data``): the scientific guards."""
    from lamflow.workflows.stages import all_stages
    from lamflow.workflows.stages._guards import metric_problem

    for stage in all_stages():
        stage.guard(spec.stages.section(stage.key), refs)
    gate = spec.registry.promote_gate
    if gate is not None:
        tested = refs.part(gate.dataset, "test")
        problem = metric_problem(gate.metric, None, refs.data.labels(tested), tested)
        if problem is not None:
            raise SpecError(refs.shown, "registry.promote_gate.metric", problem)


def _dataset_path(location: str, shown: str, where: str, base_dir: Path, fetch: Fetch | None) -> Path:
    """A dataset's folder or file on this machine; a pushed dataset's URI is fetched into the cache."""
    if "://" not in location:
        path = Path(location).expanduser()
        return path if path.is_absolute() else (base_dir / path).resolve()
    if not location.startswith("s3://"):
        raise SpecError(shown, where, f"{location}: only s3:// URIs (or paths) name datasets")
    if fetch is None:
        raise SpecError(shown, where, f"{location}: a remote dataset needs a store to fetch it with")
    try:
        return fetch(location)
    except LamflowError as exc:
        if exc.exit_code == EXIT_BAD_INPUT:
            raise SpecError(shown, where, str(exc)) from None
        raise type(exc)(f"{shown}: {where}: {exc}") from None


def _converted(
    ds: Any, shown: str, where: str, base_dir: Path, root: Path
) -> tuple[Path, tuple[tuple[Path, ...], ...]]:
    """A raw-format dataset converted with dpdata (once per content) into ``root``, and its sources (each
    with the files dpdata reads beside it)."""
    from lamflow.ops.convert import convert_cached, expand_sources, source_files

    pattern = Path(ds.path).expanduser()
    source = pattern if pattern.is_absolute() else base_dir / pattern
    try:
        files = expand_sources([source])
        groups = tuple(tuple(source_files(f, ds.format)) for f in files)
        return convert_cached(files, ds.format, root, ds.type_map), groups
    except DatasetError as exc:
        raise SpecError(shown, where, str(exc)) from None


def check_datasets(
    spec: Spec,
    shown: str,
    base_dir: Path,
    fetch: Fetch | None = None,
    convert_root: Path | None = None,
    conversions: dict[str, tuple[tuple[Path, ...], ...]] | None = None,
) -> tuple[dict[str, Path], dict[str, DatasetInfo], list[str]]:
    """Inspect every dataset (raw DFT outputs converted into ``convert_root`` first, their source files
    recorded in ``conversions``); work out the element names of each and the model's type_map."""
    conversions = {} if conversions is None else conversions
    paths: dict[str, Path] = {}
    infos: dict[str, DatasetInfo] = {}
    elements_in_order: list[str] = []
    elements_of: dict[str, set[str]] = {}
    for name in spec.datasets:
        ds = spec.datasets[name]
        if ds.type_map is not None and ds.format == "deepmd/hdf5":
            raise SpecError(shown, f"datasets.{name}.type_map", "not supported for deepmd/hdf5 datasets")
        if ds.type_map is not None and len(set(ds.type_map)) != len(ds.type_map):
            raise SpecError(shown, f"datasets.{name}.type_map", "repeats an element")
        if ds.converted:
            if "://" in ds.path:
                raise SpecError(shown, f"datasets.{name}.path", f"{ds.format}: give a local path or glob")
            if convert_root is None:
                from lamflow.workflows.settings import Settings

                convert_root = Settings().cache_dir / "converted"
            path, conversions[name] = _converted(ds, shown, f"datasets.{name}.path", base_dir, convert_root)
        else:
            path = _dataset_path(ds.path, shown, f"datasets.{name}.path", base_dir, fetch)
        try:
            info = inspect_dataset(path, ds.stored_format)
        except DatasetError as exc:
            raise SpecError(shown, f"datasets.{name}.path", str(exc)) from None
        names: set[str] = set()
        for system in info.systems:
            if ds.type_map is not None and not ds.converted:  # converted: dpdata applied it
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
                outside = sorted(set(system_elements) - set(ds.type_map or system_elements))
                if ds.converted and outside:  # dpdata would append them to the given element order
                    raise SpecError(
                        shown,
                        f"datasets.{name}.type_map",
                        f"{list(ds.type_map or [])} lacks {', '.join(outside)}, which {ds.path} has",
                    )
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


def split_datasets(
    spec: Spec, shown: str, paths: dict[str, Path], infos: dict[str, DatasetInfo], root: Path
) -> dict[str, dict[str, dict[str, list[int]]]]:
    """Write the train/test parts of every split dataset (once, content-addressed under ``root``) and add
    them to ``paths``/``infos`` as ``<name>@train`` and ``<name>@test``; returns the frame indices."""
    from lamflow.ops.split import PARTS, SplitRule, split_indices, write_split

    records = {}
    for name, ds in spec.datasets.items():
        if ds.split is None:
            continue
        where = f"datasets.{name}.split"
        if ds.stored_format != "deepmd/npy":
            raise SpecError(shown, where, "splits are made of deepmd/npy datasets (or converted raw outputs)")
        rule = SplitRule(ds.split.test_fraction, ds.split.test_frames, ds.split.seed)
        systems = [s.path for s in infos[name].systems]
        for n, system in enumerate(infos[name].systems):
            try:
                split_indices(system.nframes, rule, n)
            except ValueError as exc:
                raise SpecError(shown, where, f"{system.path}: {exc}") from None
        folder, by_part = write_split(systems, rule, None if ds.converted else ds.type_map, root)
        root_dir = paths[name] if paths[name].is_dir() else paths[name].parent  # recorded relative to it
        records[name] = {
            os.path.relpath(system, root_dir): by_part[f"{n:04d}-{Path(system).name}"]
            for n, system in enumerate(systems)
        }
        for part in PARTS:
            paths[f"{name}@{part}"] = folder / part
            infos[f"{name}@{part}"] = inspect_dataset(folder / part)
    return records


def subset_datasets(
    spec: Spec, shown: str, paths: dict[str, Path], infos: dict[str, DatasetInfo], root: Path
) -> dict[str, dict[str, list[int]]]:
    """Write the random train subsets the stages ask for (nested per repeat, content-addressed under
    ``root``) and add them to ``paths``/``infos``; returns {subset: {train-part system: [frame...]}}."""
    from lamflow.ops.split import write_subset
    from lamflow.workflows.stages import all_stages

    records: dict[str, dict[str, list[int]]] = {}
    for stage in all_stages():
        for name, size, repeat in stage.subsets(spec.stages.section(stage.key)):
            subset = f"{name}@train-n{size}-r{repeat}"
            if subset in records:
                continue
            split = spec.datasets[name].split
            assert split is not None  # the stage's check refuses a dataset without one
            systems = [s.path for s in infos[f"{name}@train"].systems]
            folder, records[subset] = write_subset(systems, size, repeat, split.seed, root / "subsets")
            paths[subset] = folder
            infos[subset] = inspect_dataset(folder)
    return records


def resolve(
    spec: Spec, shown: str, base_dir: Path, fetch: Fetch | None = None, split_root: Path | None = None
) -> ResolvedSpec:
    from lamflow.workflows.stages._guards import Datasets

    refs = check_stages(spec, shown, base_dir)  # names first: a typo is reported before any file is read
    if split_root is None:
        from lamflow.workflows.settings import Settings

        split_root = Settings().cache_dir / "splits"
    conversions: dict[str, tuple[tuple[Path, ...], ...]] = {}
    paths, infos, type_map = check_datasets(
        spec, shown, base_dir, fetch, split_root.parent / "converted", conversions
    )
    splits = split_datasets(spec, shown, paths, infos, split_root)
    type_maps = {n: None if d.converted else d.type_map for n, d in spec.datasets.items()}
    refs.data = Datasets(paths, infos, {**type_maps, **{n: None for n in paths if n not in type_maps}})
    guard_stages(spec, refs)
    subsets = subset_datasets(spec, shown, paths, infos, split_root)
    return ResolvedSpec(
        spec=spec,
        source=shown,
        base_dir=base_dir,
        dataset_paths=paths,
        dataset_info=infos,
        dataset_formats={
            **{
                name: DatasetFormat(format=ds.stored_format, type_map=None if ds.converted else ds.type_map)
                for name, ds in spec.datasets.items()
            },
            **{name: DatasetFormat() for name in paths if "@" in name},  # split parts carry type_map.raw
        },
        type_map=type_map,
        overlaps=frozenset(refs.overlaps),
        notices=tuple(refs.notices),
        unlearned=dict(refs.unlearned),
        splits=splits,
        subsets=subsets,
        conversions=conversions,
    )


def load_spec(path: str | Path, fetch: Fetch | None = None, split_root: Path | None = None) -> ResolvedSpec:
    """Read, validate and resolve a spec file. Raises :class:`SpecError` (one line) on any problem.

    ``fetch`` turns a dataset URI (s3://) into a verified local copy; without it URIs are refused."""
    path = Path(path)
    shown = str(path)
    data = read_yaml(path, shown)
    spec = validate_data(data, shown)
    return resolve(spec, shown, path.resolve().parent, fetch, split_root)
