"""What a finished run offers besides its step records, for every engine: ``models/`` links to each
frozen model and training checkpoint (``summary.models``/``checkpoints``) and the test results table
(``summary.tests``), from the steps' outputs as they lie in the run directory."""

from __future__ import annotations

import os
from pathlib import Path

from lamflow.workflows.compile.plan import Plan
from lamflow.workflows.engines.summary import DONE, RunSummary, TestResult
from lamflow.workflows.spec.base import model_slug


def link_models(run_dir: Path, summary: RunSummary, plan: Plan) -> None:
    models_dir = run_dir / "models"

    def link(name: str, target: Path) -> str:
        """models/<name> -> target (a relative link); the link's run-relative path."""
        models_dir.mkdir(exist_ok=True)
        path = models_dir / name
        path.unlink(missing_ok=True)
        path.symlink_to(os.path.relpath(target, models_dir))
        return os.path.relpath(path, run_dir)

    for step in plan.steps:
        outputs = summary.steps[step.key].outputs
        if step.model_ref is not None and "model" in outputs:
            summary.models[step.model_ref] = link(
                f"{model_slug(step.model_ref)}.pth", run_dir / outputs["model"]
            )
        if step.checkpoint_ref is not None and "checkpoint" in outputs:
            target = (run_dir / outputs["checkpoint"]).resolve()
            summary.checkpoints[step.checkpoint_ref] = link(f"{model_slug(step.checkpoint_ref)}.pt", target)
    summary.tests = test_results(summary, plan)


def test_results(summary: RunSummary, plan: Plan) -> list[TestResult]:
    """One row per finished test step (the model, the dataset and the step's ``metrics`` output), and one
    per model of a finished comparison step (its role and its figures in the ``comparison`` output)."""
    rows = []
    for s in plan.steps:
        record = summary.steps[s.key]
        if record.phase not in DONE:
            continue
        if s.evaluation is not None:
            rows.append(
                TestResult(
                    step=s.key,
                    model=s.evaluation.model,
                    dataset=s.evaluation.dataset,
                    change_bias_on=s.evaluation.change_bias_on,
                    overlap=s.evaluation.overlap,
                    study=s.evaluation.study,
                    protocol=s.evaluation.protocol,
                    train_frames=s.evaluation.train_frames,
                    repeat=s.evaluation.repeat,
                    unlearned=list(s.evaluation.unlearned),
                    property=s.evaluation.property,
                    components=list(s.evaluation.components),
                    metrics=record.parameters.get("metrics", {}),
                )
            )
        if s.comparison is not None:
            figures = record.parameters.get("comparison", {})
            rows += [
                TestResult(
                    step=s.key, model=model, dataset=s.comparison.dataset, role=role, metrics=figures[model]
                )
                for role, model in s.comparison.roles
                if model in figures
            ]
    return rows
