"""Tables of a run's test results: the rows as flat records, learning-curve points (mean and spread over
repeats), the dummy-normalised errors log-averaged over datasets, and the transfer studies' gates."""

from __future__ import annotations

import math
import statistics
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any, get_args

from lamflow.ops.evaluation.baseline import log_average, worse_than_dummy
from lamflow.workflows.engines.summary import GateResult, TestResult
from lamflow.workflows.spec.transfer import GateMetric, GateSpec

# what a CSV row holds, in order (metrics in SI-like units: eV/atom, eV/Å; normalised errors in 0..1)
COLUMNS = (
    "study",
    "model",
    "protocol",
    "train_frames",
    "repeat",
    "dataset",
    "change_bias_on",
    "role",
    "step",
    "frames",
    "energy_rmse_per_atom",
    "energy_mae_per_atom",
    "force_rmse",
    "force_mae",
    "virial_rmse_per_atom",
    "dummy_energy_rmse_per_atom",
    "dummy_force_rmse",
    "dummy_virial_rmse_per_atom",
    "normalized_energy",
    "normalized_force",
    "normalized_virial",
    "normalized_error",
    "ratio_energy",
    "ratio_force",
    "ratio_virial",
    "property_rmse",
    "property_mae",
    "dummy_property_rmse",
    "normalized_property",
    "ratio_property",
    "worse_than_dummy",
    "unlearned_elements",
    "property",
    "property_components",
    "property_rmse_by_component",
    "dummy_property_rmse_by_component",
)
METRIC_COLUMNS = COLUMNS[COLUMNS.index("frames") : COLUMNS.index("worse_than_dummy")]
CURVE_METRICS = get_args(GateMetric)  # a learning-curve point carries every metric a gate can read
COMPONENT_METRICS = ("property_rmse_", "dummy_property_rmse_", "ratio_property_")  # + component index


def by_component(metrics: dict[str, float], prefix: str, count: int) -> list[float | None]:
    """``<prefix><i>`` for each component i (None where absent)."""
    return [metrics.get(f"{prefix}{i}") for i in range(count)]


def protocol_of(row: TestResult) -> str:
    """How the row's model was used: a transfer protocol, a distillation role, or a plain test."""
    if row.protocol:
        return row.protocol
    if row.role:
        return row.role
    return "change-bias" if row.change_bias_on else "test"


def flat(row: TestResult) -> dict[str, object]:
    """One test row as a flat record (the CSV's and metrics.json's ``rows``)."""
    record: dict[str, object] = {
        "study": row.study or "",
        "model": row.model,
        "protocol": protocol_of(row),
        "train_frames": row.train_frames if row.train_frames is not None else "",
        "repeat": row.repeat if row.repeat is not None else "",
        "dataset": row.dataset,
        "change_bias_on": row.change_bias_on or "",
        "role": row.role or "",
        "step": row.step,
    }
    for key in METRIC_COLUMNS:
        record[key] = row.metrics.get(key, "")
    record["worse_than_dummy"] = " ".join(worse_than_dummy(row.metrics))
    record["unlearned_elements"] = " ".join(row.unlearned)
    record["property"] = row.property or ""
    record["property_components"] = " ".join(row.components)
    for key, prefix in (("property_rmse_by_component", "property_rmse_"),
                        ("dummy_property_rmse_by_component", "dummy_property_rmse_")):  # fmt: skip
        values = by_component(row.metrics, prefix, len(row.components))
        record[key] = " ".join(f"{v:.6g}" for v in values if v is not None)
    return record


@dataclass(frozen=True)
class CurvePoint:
    """One learning-curve point: a study's model (or 'scratch') at N train frames on a dataset."""

    study: str
    dataset: str
    model: str
    protocol: str  # finetune | scratch
    train_frames: int
    repeats: int
    mean: dict[str, float]
    std: dict[str, float]  # sample standard deviation over repeats (0 for one repeat)
    property: str | None = None  # a property study's property, and its component names
    components: tuple[str, ...] = ()


def curve_points(rows: Iterable[TestResult]) -> list[CurvePoint]:
    groups: dict[tuple[str, str, str, str, int], list[TestResult]] = {}
    for row in rows:
        if row.protocol in ("finetune", "scratch") and row.train_frames is not None:
            key = (row.study or "", row.dataset, row.model, row.protocol, row.train_frames)
            groups.setdefault(key, []).append(row)
    points = []
    for (study, dataset, model, protocol, n), members in sorted(groups.items()):
        mean, std = {}, {}
        components = tuple(members[0].components)
        per_component = [f"{p}{i}" for p in COMPONENT_METRICS for i in range(len(components))]
        for metric in (*CURVE_METRICS, *per_component):
            values = [m.metrics[metric] for m in members if _finite(m.metrics.get(metric))]
            if values:
                mean[metric] = statistics.fmean(values)
                std[metric] = statistics.stdev(values) if len(values) > 1 else 0.0
        points.append(
            CurvePoint(
                study, dataset, model, protocol, n, len(members), mean, std, members[0].property, components
            )
        )
    return points


def _finite(value: object) -> bool:
    return isinstance(value, (int, float)) and math.isfinite(value)


def generalizability(rows: Iterable[TestResult]) -> list[dict[str, Any]]:
    """Per model and protocol: the normalised error log-averaged over the datasets it was tested on (as
    LAMBench aggregates its generalizability metric), with the datasets it covers."""
    groups: dict[tuple[str, str, int | None], dict[str, list[float]]] = {}
    for row in rows:
        value = row.metrics.get("normalized_error")
        if not _finite(value) or value <= 0:  # type: ignore[operator]
            continue
        key = (row.model, protocol_of(row), row.train_frames)
        groups.setdefault(key, {}).setdefault(row.dataset, []).append(float(value))  # type: ignore[arg-type]
    out = []
    for (model, protocol, n), per_dataset in sorted(
        groups.items(), key=lambda kv: (kv[0][0], kv[0][1], kv[0][2] or 0)
    ):
        means = [statistics.fmean(v) for v in per_dataset.values()]  # repeats: their mean per dataset
        out.append(
            {
                "model": model,
                "protocol": protocol,
                "train_frames": n if n is not None else "",
                "datasets": sorted(per_dataset),
                "normalized_error_log_average": log_average(means),
            }
        )
    return out


def coverage(systems: dict[str, dict[str, float]]) -> list[dict[str, object]]:
    """Per-system errors ranked worst first (force RMSE, else energy): where a model needs data."""

    def rank(item: tuple[str, dict[str, float]]) -> float:
        m = item[1]
        return m.get("force_rmse", m.get("energy_rmse_per_atom", 0.0))

    return [{"system": name, **m} for name, m in sorted(systems.items(), key=rank, reverse=True)]


def check_gates(
    gates: Sequence[tuple[str, GateSpec]], rows: Sequence[TestResult], test_part: Callable[[str], str]
) -> list[GateResult]:
    """``gates``: (study name, gate); ``test_part``: a dataset's name -> the name its test rows carry."""
    results = []
    for study, gate in gates:
        dataset = test_part(gate.dataset)
        mine = [r for r in rows if r.study == study and r.model == gate.model and r.dataset == dataset]
        if isinstance(gate.at, int):
            mine = [r for r in mine if r.protocol == "finetune" and r.train_frames == gate.at]
        else:
            mine = [r for r in mine if r.protocol == gate.at]
        values = [float(r.metrics[gate.metric]) for r in mine if _finite(r.metrics.get(gate.metric))]
        value = statistics.fmean(values) if values else None
        results.append(
            GateResult(
                study=study,
                model=gate.model,
                dataset=gate.dataset,
                at=gate.at,
                metric=gate.metric,
                max=gate.max,
                value=value,
                passed=value is not None and value <= gate.max,
            )
        )
    return results
