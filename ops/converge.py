"""Converge step of the concurrent-learning loop: after an iteration, read the selection's accurate
fraction and (when the loop tests on held-out data) the test step's force RMSE, and decide — converged,
stopped at ``max_iterations`` without converging, or on to the next iteration — with the reason in words
(:mod:`lamflow.ops.active.converge`). Its ``stop`` output is what the loop's next iteration is conditioned
on (``when``), so the number of iterations is decided at run time."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

from dflow.python import FatalError
from pydantic import Field

from lamflow.ops.active.converge import Criteria, decide
from lamflow.ops.label_dft import REPORT as LABEL_REPORT
from lamflow.ops.runtime.common import work_dir, write_json
from lamflow.ops.runtime.contract import LamflowOP, OpModel
from lamflow.ops.select_frames import REPORT as SELECTION
from lamflow.ops.test import parse_test_metrics

DECISION = "decision.json"


class ConvergeParams(OpModel):
    iteration: int = Field(ge=1, description="The iteration just finished (1-based).")
    max_iterations: int = Field(ge=1)
    accurate_fraction: float = Field(
        0.0, ge=0, le=1, description="Converged at or above it; 0: no criterion."
    )
    test_force_rmse: float = Field(0.0, ge=0, description="eV/Å: converged at or below it; 0: no criterion.")


class ConvergeInput(ConvergeParams):
    picked: Path = Field(description="The select step's folder (selection.json).")
    test_log: Path | None = Field(None, description="The held-out test step's `dp test` log, if any.")
    random_test_log: Path | None = Field(
        None, description="The same test of the model trained on frames picked at random (the baseline)."
    )
    labels: Path | None = Field(None, description="The label step's folder (label-report.json), if any.")


class ConvergeOutput(OpModel):
    stop: bool
    converged: bool
    reason: str
    next_iteration: int
    next_tag: str = Field(description="The next iteration as step keys carry it: i002.")
    decision: Path
    record: dict[str, Any] = Field(description="The iteration's row: counts, fractions, test RMSE, decision.")


class ConvergeOP(LamflowOP[ConvergeInput, ConvergeOutput]):
    """Stop or go on after one iteration, and why."""

    name = "converge"
    Params = ConvergeParams
    Input = ConvergeInput
    Output = ConvergeOutput

    def run(self, inp: ConvergeInput) -> ConvergeOutput:
        selection_file = inp.picked / SELECTION
        if not selection_file.is_file():
            raise FatalError(f"converge: the select step wrote no {SELECTION}")
        selection: dict[str, Any] = json.loads(selection_file.read_text())
        criteria = Criteria(
            max_iterations=inp.max_iterations,
            accurate_fraction=inp.accurate_fraction or None,
            test_force_rmse=inp.test_force_rmse or None,
        )
        rmse = _force_rmse(inp.test_log, "the held-out test")
        random_rmse = _force_rmse(inp.random_test_log, "the random baseline's test")
        labelled = None
        if inp.labels is not None and (inp.labels / LABEL_REPORT).is_file():
            labelled = json.loads((inp.labels / LABEL_REPORT).read_text())
        decision = decide(
            criteria,
            inp.iteration,
            accurate_fraction=selection.get("accurate_fraction"),
            test_force_rmse=None if rmse is None else float(rmse),
        )
        record = {
            "iteration": inp.iteration,
            "stop": decision.stop,
            "converged": decision.converged,
            "reason": decision.reason,
            "accurate_fraction": selection.get("accurate_fraction"),
            "test_force_rmse": _finite(rmse),
            "selection": selection,
            "labelling": labelled,
            "random_test_force_rmse": _finite(random_rmse),
        }
        out = write_json(work_dir() / DECISION, record)
        print(f"converge: {decision.reason}")
        return ConvergeOutput(
            stop=decision.stop,
            converged=decision.converged,
            reason=decision.reason,
            next_iteration=inp.iteration + 1,
            next_tag=f"i{inp.iteration + 1:03d}",
            decision=out,
            record=record,
        )


def _force_rmse(log: Path | None, what: str) -> float | None:
    """The force RMSE a `dp test` log reports (None without a log)."""
    if log is None:
        return None
    try:
        value = parse_test_metrics(log.read_text(errors="replace")).get("force_rmse")
    except ValueError as exc:
        raise FatalError(f"converge: {what}'s log: {exc}") from None
    return None if value is None else float(value)


def _finite(value: float | None) -> float | None:
    return value if value is not None and math.isfinite(value) else None  # JSON has no NaN
