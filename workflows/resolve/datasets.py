"""A spec's datasets on this machine: found (a path, or a pushed dataset fetched into the cache),
converted (raw DFT outputs, with dpdata, once per content), checked (every array, as a step will read it),
split into train/test parts and cut into learning-curve subsets — the file-system half of validate.

One-line :class:`SpecError` messages name the YAML path and the file. May import: ``spec``, ``settings``,
``errors``, ``ops`` (the data checks, conversion and splits that steps run too).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from lamflow.ops.convert import convert_cached, expand_sources, source_files
from lamflow.ops.data.datasets import DatasetError, DatasetInfo
from lamflow.ops.data.split import PARTS, SplitRule, split_indices, write_split, write_subset
from lamflow.workflows.errors import EXIT_BAD_INPUT, LamflowError, SpecError
from lamflow.workflows.resolve.inspected import inspect_remembered
from lamflow.workflows.resolve.properties import extensive_evidence
from lamflow.workflows.settings import Settings
from lamflow.workflows.spec.datasets import DatasetSpec
from lamflow.workflows.spec.spec import Spec

Fetch = Callable[[str], Path]  # dataset URI -> verified local copy


def declared_properties(ds: DatasetSpec) -> dict[str, int]:
    """What the dataset's check reads beside the labels: property name -> values per frame."""
    return {name: prop.dim for name, prop in ds.properties.items()}


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
                convert_root = Settings().cache_dir / "converted"
            path, conversions[name] = _converted(ds, shown, f"datasets.{name}.path", base_dir, convert_root)
        else:
            path = _dataset_path(ds.path, shown, f"datasets.{name}.path", base_dir, fetch)
        try:
            info = inspect_remembered(path, ds.stored_format, declared_properties(ds))
        except DatasetError as exc:
            raise SpecError(shown, f"datasets.{name}.path", str(exc)) from None
        for prop_name, prop in ds.properties.items():
            evidence = (
                extensive_evidence(info, prop_name, prop.component_names(prop_name))
                if prop.intensive
                else None
            )
            if evidence is not None:
                raise SpecError(
                    shown,
                    f"datasets.{name}.properties.{prop_name}.intensive",
                    f"declared intensive, but {evidence}; declare intensive: false (DeePMD-kit then sums "
                    "the atomic contributions), or check the data",
                )
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
            infos[f"{name}@{part}"] = inspect_remembered(folder / part, properties=declared_properties(ds))
    return records


def subset_datasets(
    spec: Spec,
    paths: dict[str, Path],
    infos: dict[str, DatasetInfo],
    root: Path,
    requests: Iterable[tuple[str, int, int]],
) -> dict[str, dict[str, list[int]]]:
    """Write the random train subsets asked for (``requests``: split dataset, frames, repeat; nested per
    repeat, content-addressed under ``root``) and add them to ``paths``/``infos``; returns {subset:
    {train-part system: [frame...]}}."""
    records: dict[str, dict[str, list[int]]] = {}
    for name, size, repeat in requests:
        subset = f"{name}@train-n{size}-r{repeat}"
        if subset in records:
            continue
        split = spec.datasets[name].split
        assert split is not None  # the stage's check refuses a dataset without one
        systems = [s.path for s in infos[f"{name}@train"].systems]
        folder, records[subset] = write_subset(systems, size, repeat, split.seed, root / "subsets")
        paths[subset] = folder
        infos[subset] = inspect_remembered(folder, properties=declared_properties(spec.datasets[name]))
    return records
