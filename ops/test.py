"""Test step: ``dp --pt test`` of one frozen model on one dataset -> energy/force/virial errors, or a
property model's errors per component (:mod:`lamflow.ops.evaluation.properties`)."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
from dflow.python import FatalError
from pydantic import Field

from lamflow.ops.data.datasets import DatasetFormat, StagedDatasets, dataset_root, dataset_systems
from lamflow.ops.dp import test_command
from lamflow.ops.runtime import files
from lamflow.ops.runtime.common import run_dp_step, work_dir
from lamflow.ops.runtime.contract import LamflowOP, OpModel

_METRIC_LINE = re.compile(r"(Energy|Force|Virial)\s+(MAE|RMSE)(/Natoms)?\s*:\s*([-+0-9.eE]+|nan)")


def parse_test_metrics(log_text: str) -> dict[str, float]:
    """Errors from the "weighted average of errors" block of ``dp test`` output.

    Keys: energy_{mae,rmse} (eV), energy_{mae,rmse}_per_atom (eV/atom), force_{mae,rmse} (eV/Å),
    virial_{mae,rmse}[_per_atom] when the data has virials. Raises ValueError when the block is absent.
    """
    marker = log_text.rfind("weighted average of errors")
    if marker < 0:
        raise ValueError("no 'weighted average of errors' block in dp test output")
    metrics: dict[str, float] = {}
    for match in _METRIC_LINE.finditer(log_text[marker:]):
        quantity, kind, per_atom, value = match.groups()
        key = f"{quantity.lower()}_{kind.lower()}" + ("_per_atom" if per_atom else "")
        metrics.setdefault(key, float(value))
    if "energy_rmse_per_atom" not in metrics and "force_rmse" not in metrics:
        raise ValueError("dp test printed no energy or force errors")
    return metrics


class PropertyTarget(OpModel):
    """The property a property model predicts, as the dataset declares it."""

    name: str = Field(description="DeePMD-kit's property_name: the sets' <name>.npy.")
    dim: int = Field(ge=1, description="Values per frame (task_dim).")
    intensive: bool


class TestParams(OpModel):
    __test__ = False  # not a pytest class

    dataset: str = Field(description="The staged dataset to test on.")
    frames: int = Field(0, ge=0, description="Frames per system (0 = all).")
    baseline_dataset: str = Field(
        "",
        description="Staged dataset whose frames fit the dummy model's per-element energies (a split "
        "dataset's train part); empty: the test frames themselves (an optimistic dummy). Not `str | None`: "
        "dflow would hand a None text parameter to the step as 'null'.",
    )
    dataset_formats: dict[str, DatasetFormat]
    property: PropertyTarget | None = Field(
        None,
        description="Test a property model on this property: errors per component and against a dummy "
        "that predicts the baseline dataset's mean; None: an energy model.",
    )


class TestInput(TestParams, StagedDatasets):
    __test__ = False

    model: Path


class TestOutput(OpModel):
    __test__ = False

    metrics: dict[str, float] = Field(
        description="energy_rmse_per_atom (eV/atom), force_rmse (eV/Å), ..., frames, the dummy model's "
        "RMSEs (dummy_*) and the normalised errors (normalized_*: min(RMSE / dummy RMSE, 1)); for a "
        "property: property_{mae,rmse}[_<i>], dummy_property_*, ratio_property[_<i>], normalized_property."
    )
    detail: Path
    log: Path


ALL_PROPERTY_ROWS = "property_all.out"  # a property test's rows, one block per system (for the report)
SYSTEMS_FILE = "systems.json"  # beside the detail files: the systems in the order dp test appended them
_TESTED = re.compile(r"# testing system : (\S+)")
_NUMBER = re.compile(r"# number of test data : (\d+)")


def tested_systems(log_text: str, cwd: Path) -> list[dict[str, object]]:
    """[{system, frames, atoms}] in the order ``dp test`` tested them (and appended their rows to the one
    block of each detail file): what splits the rows by system for the report's parity plots."""
    out: list[dict[str, object]] = []
    starts = [m for m in _TESTED.finditer(log_text)]
    for match, following in zip(starts, [*starts[1:], None], strict=True):
        block = log_text[match.end() : following.start() if following else len(log_text)]
        frames = _NUMBER.search(block)
        path = Path(match.group(1))
        path = path if path.is_absolute() else cwd / path
        try:
            atoms = len((path / "type.raw").read_text().split())
        except OSError:
            return []  # not readable here (hdf5): the report draws one series
        if frames is None:
            return []
        out.append({"system": path.name, "frames": int(frames.group(1)), "atoms": atoms})
    return out


class TestOP(LamflowOP[TestInput, TestOutput]):
    """``dp --pt test -m MODEL -s DATA`` -> errors per atom / per force component, and the detail files."""

    __test__ = False

    name = "test"
    preload = ("dpdata",)
    Params = TestParams
    Input = TestInput
    Output = TestOutput

    def run(self, inp: TestInput) -> TestOutput:
        cwd = work_dir()
        systems = dataset_root(inp.dataset, inp.datasets, inp.dataset_formats, cwd / "systems")
        detail = cwd / "detail"
        detail.mkdir(exist_ok=True)
        argv = test_command(
            inp.model.resolve(), systems, numb_test=inp.frames, detail_prefix=f"detail/{files.DETAIL_PREFIX}"
        )
        run_dp_step(argv, cwd, files.TEST_LOG)
        log_text = (cwd / files.TEST_LOG).read_text(encoding="utf-8", errors="replace")
        if inp.property is not None:
            metrics = self.property_errors(inp, inp.property, log_text, detail, cwd)
        else:
            metrics = self.energy_errors(inp, log_text, detail, cwd)
        (detail / SYSTEMS_FILE).write_text(json.dumps(tested_systems(log_text, cwd), indent=1) + "\n")
        return TestOutput(metrics=metrics, detail=detail, log=cwd / files.TEST_LOG)

    @classmethod
    def energy_errors(cls, inp: TestInput, log_text: str, detail: Path, cwd: Path) -> dict[str, float]:
        """The log's weighted errors, the frames tested and the dummy model's errors beside them."""
        try:
            metrics = parse_test_metrics(log_text)
        except ValueError as exc:
            raise FatalError(f"{files.TEST_LOG}: {exc}") from exc
        energies = (detail / f"{files.DETAIL_PREFIX}.e.out").read_text().splitlines()
        metrics["frames"] = sum(1 for line in energies if line.strip() and not line.startswith("#"))
        metrics.update(cls.against_dummy(inp, metrics, cwd))
        return metrics

    @staticmethod
    def property_errors(
        inp: TestInput, target: PropertyTarget, log_text: str, detail: Path, cwd: Path
    ) -> dict[str, float]:
        """Errors per component from the detail files, checked against the log's pooled figures, next to
        the dummy model's; the rows for the report go to ``<prefix>.property_all.out``."""
        from lamflow.ops.evaluation import properties

        try:
            pooled = properties.parse_property_metrics(log_text)
            per_frame = properties.read_property_detail(detail, files.DETAIL_PREFIX)
        except ValueError as exc:
            raise FatalError(f"{files.TEST_LOG}: {exc}") from exc
        if not per_frame:
            raise FatalError(f"dp test wrote no {files.DETAIL_PREFIX}.property.out.* detail files")
        labels, predictions = properties.component_errors(per_frame)
        if labels.shape[1] != target.dim:
            raise FatalError(
                f"dp test wrote {labels.shape[1]} values per frame; {target.name} has {target.dim}"
            )
        fit = inp.baseline_dataset or inp.dataset
        systems = dataset_systems([fit], inp.datasets, inp.dataset_formats, cwd / "systems")
        try:
            dummy = properties.train_mean([Path(s) for s in systems], target.name, target.dim)
        except ValueError as exc:
            raise FatalError(str(exc)) from exc
        metrics = {**pooled, **properties.property_metrics(labels, predictions, dummy)}
        pooled_rmse = float(np.sqrt(np.mean((predictions - labels) ** 2)))
        if abs(metrics["property_rmse"] - pooled_rmse) > 1e-4 * (1e-3 + pooled_rmse):
            raise FatalError(
                f"{files.TEST_LOG}: PROPERTY RMSE {metrics['property_rmse']:g} disagrees with the detail "
                f"files ({pooled_rmse:g})"
            )
        names = [*(f"data_{i}" for i in range(target.dim)), *(f"pred_{i}" for i in range(target.dim))]
        with (detail / f"{files.DETAIL_PREFIX}.{ALL_PROPERTY_ROWS}").open("w") as out:
            for system, rows in per_frame.items():
                table = np.concatenate([rows[:, 0, :], rows[:, 1, :]], axis=1)
                np.savetxt(out, table, header=f"{system}: {' '.join(names)}")
        return metrics

    @staticmethod
    def against_dummy(inp: TestInput, metrics: dict[str, float], cwd: Path) -> dict[str, float]:
        """The dummy model's RMSEs on the same frames, and this model's normalised errors."""
        from lamflow.ops.evaluation.baseline import dummy_errors, normalized
        from lamflow.ops.evaluation.predict import load_systems

        def systems(name: str, frames: int) -> list:  # dp test's scratch: a type_map shadow is made once
            return load_systems(
                dataset_systems([name], inp.datasets, inp.dataset_formats, cwd / "systems"), frames
            )

        test = systems(inp.dataset, inp.frames)
        fit = systems(inp.baseline_dataset, 0) if inp.baseline_dataset else test
        dummy = dummy_errors(test, fit)
        return {**dummy, **normalized(metrics, dummy)}
