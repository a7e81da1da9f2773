"""The report's PNG plots, drawn with matplotlib (Agg, no display): learning curves, parity plots and
training curves. Each function returns the :class:`Figure` records it wrote (file, title, series), which
the report lists in ``plots.json`` and embeds in its page."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from lamflow.ops.training.common import read_lcurve
from lamflow.workflows.report.detail import split_columns
from lamflow.workflows.report.results import CurvePoint

DPI = 110
QUANTITIES = (("energy_rmse_per_atom", "energy RMSE (meV/atom)"), ("force_rmse", "force RMSE (meV/Å)"))


@dataclass(frozen=True)
class Figure:
    file: str  # relative to the report folder
    title: str
    kind: str  # learning-curve | parity | training-curve
    series: tuple[str, ...] = field(default=())  # the labelled lines/point sets, as in the legend


def _pyplot():
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    return plt


def _no_labels():
    """Minor ticks without labels: log axes stay readable, and laying out their text is most of the cost."""
    from matplotlib.ticker import NullFormatter

    return NullFormatter()


def learning_curve(
    out: Path,
    name: str,
    title: str,
    points: Sequence[CurvePoint],
    flat_lines: Sequence[tuple[str, dict[str, float]]],
) -> Figure:
    """RMSE vs train frames, log-log, one panel per quantity: a line with error bars (sample standard
    deviation over repeats) per fine-tuned model and for scratch; ``flat_lines`` (label, metrics) as
    horizontal lines (zero-shot results, the dummy model)."""
    plt = _pyplot()
    fig, axes = plt.subplots(1, len(QUANTITIES), figsize=(5.2 * len(QUANTITIES), 4.0))
    series: list[str] = []
    for ax, (metric, label) in zip(axes, QUANTITIES, strict=True):
        drawn = _curve_lines(ax, points, metric, 1000.0)
        series += drawn if metric == QUANTITIES[0][0] else []
        for legend, metrics in flat_lines:
            value = metrics.get(metric)
            if value is None or not math.isfinite(value) or value <= 0:
                continue
            dummy = legend.startswith("dummy")
            ax.axhline(
                1000 * value,
                linestyle=":" if dummy else "-.",
                color="grey" if dummy else None,
                linewidth=1.2,
                label=legend,
            )
            if metric == QUANTITIES[0][0]:
                series.append(legend)
        _curve_axes(ax, points, label)
    axes[-1].legend(fontsize=8, loc="best")
    fig.suptitle(title, fontsize=10)
    fig.subplots_adjust(left=0.08, right=0.98, bottom=0.13, top=0.88, wspace=0.25)
    fig.savefig(out / name, dpi=DPI)
    plt.close(fig)
    return Figure(name, title, "learning-curve", tuple(series))


def _curve_lines(ax: Any, points: Sequence[CurvePoint], metric: str, scale: float) -> list[str]:
    """One line with error bars (over repeats) per fine-tuned model and one for scratch: ``metric`` (times
    ``scale``) against the train frames; returns the legends drawn."""
    groups: dict[str, list[CurvePoint]] = {}
    for p in points:
        groups.setdefault(p.model if p.protocol == "finetune" else "scratch", []).append(p)
    legends = []
    for model, members in groups.items():
        members = sorted((m for m in members if metric in m.mean), key=lambda m: m.train_frames)
        if not members:
            continue
        legend = f"fine-tuned from {model}" if model != "scratch" else "from scratch"
        ax.errorbar(
            [m.train_frames for m in members],
            [scale * m.mean[metric] for m in members],
            yerr=[scale * m.std[metric] for m in members],
            marker="o" if model != "scratch" else "s",
            linestyle="-" if model != "scratch" else "--",
            capsize=3,
            label=legend,
        )
        legends.append(legend)
    return legends


def _curve_axes(ax: Any, points: Sequence[CurvePoint], ylabel: str) -> None:
    """Log-log axes of a learning curve, a tick at each train size."""
    ax.set_xscale("log")
    ax.set_yscale("log")
    _label_log_axis(ax.yaxis, ax.get_ylim())
    sizes = sorted({p.train_frames for p in points})
    if sizes:
        from matplotlib.ticker import NullFormatter, ScalarFormatter

        ax.set_xticks(sizes)
        ax.xaxis.set_major_formatter(ScalarFormatter())
        ax.xaxis.set_minor_formatter(NullFormatter())
    ax.set_xlabel("training frames")
    ax.set_ylabel(ylabel)
    ax.grid(True, which="both", alpha=0.3)


def _label_log_axis(axis: Any, limits: tuple[float, float]) -> None:
    """A log axis spanning less than a decade gets readable labels on its minor ticks
    (matplotlib labels only 10^k: a curve within one decade had no number on its axis)."""
    from matplotlib.ticker import FuncFormatter

    lo, hi = sorted(limits)
    if lo > 0 and hi / lo < 10:
        axis.set_minor_formatter(FuncFormatter(lambda value, _: f"{value:.3g}"))
        axis.set_major_formatter(FuncFormatter(lambda value, _: f"{value:.3g}"))
    else:
        axis.set_minor_formatter(_no_labels())


def parity(out: Path, name: str, title: str, detail: dict[str, dict[str, np.ndarray]]) -> Figure | None:
    """Predicted vs DFT: energy per atom (eV/atom) and force components (eV/Å), one colour per system."""
    panels = [q for q in ("energy", "force") if detail.get(q)]
    if not panels:
        return None
    plt = _pyplot()
    fig, axes = plt.subplots(1, len(panels), figsize=(4.4 * len(panels), 4.2), squeeze=False)
    systems: list[str] = []
    for ax, quantity in zip(axes[0], panels, strict=True):
        lo, hi = math.inf, -math.inf
        blocks = detail[quantity]
        for system, rows in blocks.items():
            label, pred = split_columns(rows)
            short = Path(system).name if len(blocks) > 1 else "test frames"  # one header: every system
            ax.scatter(label.ravel(), pred.ravel(), s=6, alpha=0.6, label=short)
            lo, hi = min(lo, label.min(), pred.min()), max(hi, label.max(), pred.max())
            if quantity == panels[0]:
                systems.append(short)
        unit = "eV/atom" if quantity == "energy" else "eV/Å"
        _diagonal(ax, lo, hi, f"DFT {quantity} ({unit})", f"predicted {quantity} ({unit})")
    return _save_parity(plt, fig, axes, out, name, title, systems, left=0.1)


def _diagonal(ax: Any, lo: float, hi: float, xlabel: str, ylabel: str) -> None:
    pad = 0.05 * (hi - lo or 1.0)
    ax.plot([lo - pad, hi + pad], [lo - pad, hi + pad], color="black", linewidth=0.8)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)


def _save_parity(
    plt: Any, fig: Any, axes: Any, out: Path, name: str, title: str, systems: list[str], left: float
) -> Figure:
    """A parity figure's legend (up to 8 systems), title and file."""
    if len(systems) <= 8:
        axes[0][-1].legend(fontsize=7, markerscale=2)
    fig.suptitle(title, fontsize=10)
    fig.subplots_adjust(left=left, right=0.98, bottom=0.13, top=0.88, wspace=0.3)
    fig.savefig(out / name, dpi=DPI)
    plt.close(fig)
    return Figure(name, title, "parity", tuple(systems))


def training_curve(out: Path, name: str, title: str, lcurve: Path) -> Figure | None:
    """The training errors (columns ``rmse_*_trn*`` / ``rmse_*_val*``; a property fit's ``mae_*``) of
    ``lcurve.out`` against the step."""
    header, values = read_lcurve(lcurve)
    rows = np.asarray(values, dtype=float)
    if not header or not len(rows) or rows.shape[1] != len(header):
        return None
    columns = [
        i
        for i, c in enumerate(header)
        if (c.startswith("rmse_") or c.startswith(("mae_trn", "mae_val")))
        and c != "rmse"
        and np.all(np.isfinite(rows[:, i]))
        and np.all(rows[:, i] > 0)
    ]
    if not columns:
        return None
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(5.6, 3.8))
    for i in columns:
        ax.plot(rows[:, 0], rows[:, i], label=header[i], linestyle="--" if "_val" in header[i] else "-")
    ax.set_yscale("log")
    _label_log_axis(ax.yaxis, ax.get_ylim())
    ax.set_xlabel("training step")
    ax.set_ylabel(
        "MAE (the property's units)"
        if header[columns[0]].startswith("mae")
        else "RMSE (eV/atom for e, eV/Å for f)"
    )
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=7, ncol=2)
    ax.set_title(title, fontsize=10)
    fig.subplots_adjust(left=0.14, right=0.97, bottom=0.14, top=0.9)
    fig.savefig(out / name, dpi=DPI)
    plt.close(fig)
    return Figure(name, title, "training-curve", tuple(header[i] for i in columns))


def loop_iterations(out: Path, name: str, title: str, rows: Sequence[Any]) -> Figure | None:
    """A loop's iterations (``IterationRow`` records): the shares of explored frames that were accurate,
    candidates and failed (left), and the held-out force RMSE of the ensemble's first model, with the
    random-picks baseline where the loop ran one (right)."""
    done = [r for r in rows if r.explored is not None]
    if not done:
        return None
    plt = _pyplot()
    fig, (left, right) = plt.subplots(1, 2, figsize=(8.4, 3.6))
    x = [r.iteration for r in done]
    series = []
    for attribute, label in (
        ("accurate_fraction", "accurate"), ("candidate_fraction", "candidate"), ("failed_fraction", "failed"),
    ):  # fmt: skip
        values = [getattr(r, attribute) for r in done]
        if all(v is not None for v in values):
            left.plot(x, [100 * v for v in values], marker="o", label=label)
            series.append(label)
    left.set_ylim(-3, 103)
    left.set_xlabel("iteration")
    left.set_ylabel("explored frames (%)")
    left.legend(fontsize=7)
    left.grid(True, alpha=0.3)
    for attribute, label in (
        ("test_force_rmse", "selected by deviation"),
        ("random_test_force_rmse", "random picks"),
    ):
        points = [(r.iteration, getattr(r, attribute)) for r in done if getattr(r, attribute) is not None]
        if points:
            right.plot([i for i, _ in points], [1000 * v for _, v in points], marker="o", label=label)
            series.append(f"test: {label}")
    right.set_xlabel("iteration")
    right.set_ylabel("held-out force RMSE (meV/Å)")
    right.grid(True, alpha=0.3)
    if right.lines:
        right.legend(fontsize=7)
    for axis in (left, right):
        axis.set_xticks(x)
    fig.suptitle(title, fontsize=10)
    fig.subplots_adjust(left=0.09, right=0.98, bottom=0.15, top=0.86, wspace=0.3)
    fig.savefig(out / name, dpi=DPI)
    plt.close(fig)
    return Figure(name, title, "loop", tuple(series))


def property_learning_curve(out: Path, name: str, title: str, points: Sequence[CurvePoint]) -> Figure | None:
    """A property study's RMSE vs train frames, log-log, one panel per component (in the data's units),
    fine-tuned and scratch lines with the dummy model (the train mean) as a dotted horizontal line."""
    components = next((p.components for p in points if p.components), ())
    if not components:
        return None
    plt = _pyplot()
    fig, axes = plt.subplots(1, len(components), figsize=(4.4 * len(components), 4.0), squeeze=False)
    series: list[str] = []
    for i, (ax, component) in enumerate(zip(axes[0], components, strict=True)):
        metric = f"property_rmse_{i}"
        drawn = _curve_lines(ax, points, metric, 1.0)
        series += drawn if i == 0 else []
        dummy = [p.mean[f"dummy_property_rmse_{i}"] for p in points if f"dummy_property_rmse_{i}" in p.mean]
        if dummy and dummy[0] > 0:
            ax.axhline(dummy[0], linestyle=":", color="grey", linewidth=1.2, label="dummy (train mean)")
            if i == 0:
                series.append("dummy (train mean)")
        _curve_axes(ax, points, f"{component} RMSE")
    axes[0][-1].legend(fontsize=8, loc="best")
    fig.suptitle(title, fontsize=10)
    fig.subplots_adjust(left=0.08, right=0.98, bottom=0.13, top=0.88, wspace=0.3)
    fig.savefig(out / name, dpi=DPI)
    plt.close(fig)
    return Figure(name, title, "learning-curve", tuple(series))


def property_parity(
    out: Path, name: str, title: str, blocks: dict[str, np.ndarray], components: Sequence[str]
) -> Figure | None:
    """Predicted vs reference, one panel per component of a property, one colour per system; ``blocks``:
    {system: rows of label columns then prediction columns}."""
    if not blocks or not components:
        return None
    plt = _pyplot()
    fig, axes = plt.subplots(1, len(components), figsize=(4.2 * len(components), 4.2), squeeze=False)
    systems: list[str] = []
    for i, (ax, component) in enumerate(zip(axes[0], components, strict=True)):
        lo, hi = math.inf, -math.inf
        for system, rows in blocks.items():
            label, pred = split_columns(rows)
            if label.shape[1] != len(components):
                plt.close(fig)
                return None
            ax.scatter(label[:, i], pred[:, i], s=8, alpha=0.6, label=Path(system).name)
            lo, hi = (
                min(lo, label[:, i].min(), pred[:, i].min()),
                max(hi, label[:, i].max(), pred[:, i].max()),
            )
            if i == 0:
                systems.append(Path(system).name)
        _diagonal(ax, lo, hi, f"reference {component}", f"predicted {component}")
    return _save_parity(plt, fig, axes, out, name, title, systems, left=0.08)
