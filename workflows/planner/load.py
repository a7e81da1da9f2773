"""Load a spec file: parse it, let every stage check its names, resolve the datasets, run the stages'
guards on the data, write the subsets they train on -> :class:`ResolvedSpec`.

The one place (with :mod:`lamflow.workflows.planner.compiler`) that drives every stage: it stands above
``stages``, ``resolve`` and ``spec``. Every failure is a one-line :class:`SpecError` naming the spec file
and the YAML path.
"""

from __future__ import annotations

from pathlib import Path

from lamflow.ops.data.datasets import DatasetFormat
from lamflow.workflows.errors import SpecError
from lamflow.workflows.resolve.datasets import Fetch, check_datasets, split_datasets, subset_datasets
from lamflow.workflows.resolve.resolved import ResolvedSpec
from lamflow.workflows.settings import Settings
from lamflow.workflows.spec.parse import read_yaml, validate_data
from lamflow.workflows.spec.spec import Spec
from lamflow.workflows.stages import all_stages
from lamflow.workflows.stages._external import check_external_models
from lamflow.workflows.stages._guards import Datasets, metric_problem
from lamflow.workflows.stages.base import References


def check_stages(spec: Spec, shown: str, base_dir: Path) -> References:
    """Each stage, in order, checks the names it uses and registers the models it provides; returns the
    References it filled (for the guards, once the datasets are inspected)."""
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


def guard_stages(spec: Spec, refs: References) -> None:
    """Each stage's checks of the inspected data (``refs.data``): the scientific guards."""
    refs.guard_labels()
    for stage in all_stages():
        stage.guard(spec.stages.section(stage.key), refs)
    gate = spec.registry.promote_gate
    if gate is not None and refs.data is not None:
        tested = refs.part(gate.dataset, "test")
        problem = metric_problem(gate.metric, None, refs.data.labels(tested), tested)
        if problem is None:
            problem = _gate_kind_problem(spec, refs, gate.dataset, gate.metric)
        if problem is not None:
            raise SpecError(refs.shown, "registry.promote_gate.metric", problem)


def _gate_kind_problem(spec: Spec, refs: References, dataset: str, metric: str) -> str | None:
    """Why no model of the spec could give the promotion gate's metric on its dataset: a property metric
    needs a property model tested there, an energy metric an energy model; None when one is."""
    groups = [
        t for t in spec.stages.section("test") or [] if t.change_bias_on is None and dataset in t.datasets
    ]
    models = {ref for group in groups for ref in group.models}
    wanted = "property" if metric.startswith("property_") else "energy"
    if any((ref in refs.predicts) == (wanted == "property") for ref in models):
        return None
    kind = "no property model" if wanted == "property" else "only property models"
    return f"{metric}: {kind} of this spec {'is' if wanted == 'property' else 'are'} tested on {dataset!r}"


def resolve(
    spec: Spec, shown: str, base_dir: Path, fetch: Fetch | None = None, split_root: Path | None = None
) -> ResolvedSpec:
    refs = check_stages(spec, shown, base_dir)  # names first: a typo is reported before any file is read
    if split_root is None:
        split_root = Settings().cache_dir / "splits"
    conversions: dict[str, tuple[tuple[Path, ...], ...]] = {}
    paths, infos, type_map = check_datasets(
        spec, shown, base_dir, fetch, split_root.parent / "converted", conversions
    )
    splits = split_datasets(spec, shown, paths, infos, split_root)
    type_maps = {n: None if d.converted else d.type_map for n, d in spec.datasets.items()}
    refs.data = Datasets(paths, infos, {**type_maps, **{n: None for n in paths if n not in type_maps}})
    guard_stages(spec, refs)
    requests = [r for stage in all_stages() for r in stage.subsets(spec.stages.section(stage.key))]
    subsets = subset_datasets(spec, paths, infos, split_root, requests)
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
