"""The machine-readable record of a run: ``<run-dir>/summary.json`` (written while the run progresses)."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Literal

from pydantic import AliasChoices, BaseModel, ConfigDict, Field

from lamflow.workflows.compile.plan import Plan
from lamflow.workflows.errors import RunError, UsageError
from lamflow.workflows.timestamps import now

SUMMARY_FILE = "summary.json"
# Cached: not run, its outputs were restored from the step cache (a result of identical inputs)
Phase = Literal["Pending", "Running", "Succeeded", "Cached", "Failed", "Skipped", "Interrupted"]
DONE = ("Succeeded", "Cached")


class Slot(BaseModel):
    """What a local step held while it ran (engines/machine.py, ops/runtime/slots.py)."""

    model_config = ConfigDict(extra="forbid")

    gpus: list[str] = Field(default_factory=list, description="CUDA_VISIBLE_DEVICES of the step.")
    cores: int = Field(description="Cores of the step (its thread counts).")
    waited_s: float = Field(0.0, description="Seconds the step waited for these to be free.")

    def __str__(self) -> str:
        gpus = f"GPU{'s' if len(self.gpus) > 1 else ''} {','.join(self.gpus)}, " if self.gpus else ""
        return f"{gpus}{self.cores} core{'s' if self.cores != 1 else ''}"


class StepRecord(BaseModel):
    model_config = ConfigDict(extra="forbid")

    key: str
    op: str
    summary: str
    depends: list[str] = Field(default_factory=list)
    group: str | None = Field(
        None, description="The step group whose worker process ran this step (None: a process of its own)."
    )
    phase: Phase = "Pending"
    cache_key: str | None = Field(None, description="Hash of the step's op, inputs and tool versions.")
    started_at: str | None = None
    finished_at: str | None = None
    duration_s: float | None = None
    outputs: dict[str, str] = Field(
        default_factory=dict, description="Output artifact -> path (run-relative)."
    )
    parameters: dict[str, Any] = Field(default_factory=dict, description="Output parameters (metrics, ...).")
    error: str | None = None
    ran_on: Slot | None = Field(None, description="Local runs: the GPUs and cores the step held.")
    warnings: list[str] = Field(
        default_factory=list, description="DeePMD-kit warnings that change the meaning of the result."
    )


class TestResult(BaseModel):
    model_config = ConfigDict(extra="forbid")
    __test__ = False  # not a pytest class

    step: str
    model: str
    dataset: str
    # runs written by lamflow 0.1 call it refit_bias_on; `lamflow status` still reads them
    change_bias_on: str | None = Field(None, validation_alias=AliasChoices("change_bias_on", "refit_bias_on"))
    overlap: bool = Field(
        False, description="Tested on data that shares frames with the model's training data."
    )
    role: str | None = Field(
        None, description="In a distillation's evaluation: teacher, student or compressed (same step)."
    )
    study: str | None = Field(None, description="The transfer study of the row.")
    protocol: str | None = Field(
        None, description="In a transfer study: unshifted, zero-shot, finetune or scratch."
    )
    train_frames: int | None = Field(None, description="Learning curves: frames trained on.")
    repeat: int | None = Field(None, description="Learning curves: which random subset of that size.")
    unlearned: list[str] = Field(
        default_factory=list,
        description="Elements of the dataset that the model's type map may name but its training data never "
        "held: its predictions for them are untrained.",
    )
    property: str | None = Field(None, description="A property model's test: the property tested.")
    components: list[str] = Field(
        default_factory=list, description="The property's component names (metrics *_<i> follow them)."
    )
    metrics: dict[str, float] = Field(default_factory=dict)


class GateResult(BaseModel):
    """A transfer study's gate, as checked at the end of the run (a failed one: exit 4)."""

    model_config = ConfigDict(extra="forbid")

    study: str
    model: str
    dataset: str
    at: str | int
    metric: str
    max: float
    value: float | None  # None: no result (its steps failed or did not run)
    passed: bool

    def line(self) -> str:
        where = f"{self.study}: {self.metric} of {self.model} on {self.dataset} ({self.at})"
        if self.value is None:
            return f"{where}: no result"
        return f"{where} = {self.value:.4g} {'<=' if self.passed else '>'} {self.max:g}"


class ArgoRun(BaseModel):
    """Where an Argo run lives (the server and namespace it was created in, and its generated name)."""

    model_config = ConfigDict(extra="forbid")

    server: str
    namespace: str
    name: str
    ui: str = Field(description="The workflow in the Argo UI.")
    phase: str | None = Field(None, description="The workflow's phase as Argo last reported it.")


class IterationRow(BaseModel):
    """One iteration of a loop, as its decision step recorded it, and its steps' wall time."""

    model_config = ConfigDict(extra="forbid")

    iteration: int
    explored: int | None = None
    accurate_fraction: float | None = None
    candidate_fraction: float | None = None
    failed_fraction: float | None = None
    picked: int | None = None
    labelled: int | None = None
    label_failures: int | None = Field(None, description="Picks the labeler could not label (SCF etc.).")
    test_force_rmse: float | None = Field(None, description="eV/Å, the ensemble's first model, held out.")
    random_test_force_rmse: float | None = Field(
        None, description="eV/Å, the same test of a model trained on as many frames picked at random."
    )
    seconds: dict[str, float] = Field(
        default_factory=dict,
        description="Summed step time by kind: training, md, deviation, labelling, other; and orchestration: "
        "the part of the iteration's wall time during which no step of the run ran.",
    )
    wall_s: float | None = Field(
        None,
        description="The iteration's wall time: from the end of the iteration before (the first iteration: "
        "from its first step's start) to the end of its last step.",
    )
    decision: str | None = None


ORCHESTRATION = "orchestration"  # an iteration's time during which no step of the run ran
LOOP_SECONDS = ("training", "md", "deviation", "labelling", ORCHESTRATION)  # shown per iteration
LOOP_SECONDS_HEADER = "train / MD / devi / label / orch s"


class LoopRecord(BaseModel):
    """A loop decided at run time: its iterations so far and how it ended."""

    model_config = ConfigDict(extra="forbid")

    key: str
    iterations: list[IterationRow] = Field(default_factory=list)
    stopped: bool = False
    converged: bool = False
    reason: str | None = None
    baseline: str | None = Field(
        None, description="Whether selection by deviation beat random picks at equal budget (held-out RMSE)."
    )
    labelled: str | None = Field(
        None, description="Every frame the loop labelled, as deepmd/npy systems (run-relative), once stopped."
    )

    def orchestration(self) -> str | None:
        """How much of the loop's wall time no step ran (the engine's own share), in words; None before an
        iteration has timed steps."""
        timed = [r for r in self.iterations if r.wall_s and ORCHESTRATION in r.seconds]
        if not timed:
            return None
        idle, wall = sum(r.seconds[ORCHESTRATION] for r in timed), sum(r.wall_s or 0.0 for r in timed)
        return (
            f"no step ran during {idle:.1f} s of the loop's {wall:.1f} s ({100 * idle / wall:.1f} %: the "
            "engine's own time between steps)"
        )


class RunSummary(BaseModel):
    model_config = ConfigDict(extra="forbid")

    run_id: str
    spec: str
    spec_sha256: str
    spec_path: str | None = Field(
        None, description="The spec file, absolute (what `lamflow resume` reloads)."
    )
    engine: str
    status: Literal["Pending", "Running", "Succeeded", "Failed"] = "Pending"
    created_at: str = Field(default_factory=now)
    finished_at: str | None = None
    wall_time_s: float | None = None
    error: str | None = None
    notices: list[str] = Field(default_factory=list, description="What validate noticed (unused data, ...).")
    steps: dict[str, StepRecord]
    models: dict[str, str] = Field(default_factory=dict, description="Model reference -> frozen model path.")
    checkpoints: dict[str, str] = Field(
        default_factory=dict,
        description="Model reference -> training checkpoint (.pt; what from.model_file needs).",
    )
    tests: list[TestResult] = Field(default_factory=list)
    cache: bool = Field(True, description="Whether the step cache was used (--no-cache turns it off).")
    registered: list[str] = Field(default_factory=list, description="Model ids added to the registry.")
    attempts: int = Field(1, description="1 + how many times `lamflow resume` continued this run.")
    resumed_at: list[str] = Field(
        default_factory=list, description="When each `lamflow resume` continued the run (ISO 8601)."
    )
    argo: ArgoRun | None = Field(None, description="The Argo workflow of a run on --engine argo.")
    datasets: dict[str, str] = Field(
        default_factory=dict, description="Dataset name -> content digest (SHA-256 of its files' tree)."
    )
    gates: list[GateResult] = Field(default_factory=list, description="The transfer studies' gates.")
    loops: dict[str, LoopRecord] = Field(
        default_factory=dict, description="Loops decided at run time (stage active), by loop key."
    )
    report: str | None = Field(None, description="The run's report page (run-relative), once written.")

    def write(self, run_dir: Path) -> None:
        """Atomically replace ``<run_dir>/summary.json``."""
        tmp = run_dir / (SUMMARY_FILE + ".tmp")
        tmp.write_text(self.model_dump_json(indent=2) + "\n")
        os.replace(tmp, run_dir / SUMMARY_FILE)


def read_summary(run: str | Path, run_root: Path) -> tuple[Path, RunSummary]:
    """Find a run by directory path or by id under ``run_root`` and read its summary."""
    candidates = [Path(run)]
    if not Path(run).is_absolute() and Path(run).parts[:1] != run_root.parts[:1]:
        candidates.append(run_root / str(run))  # a run id (or a path below the run root)
    for run_dir in candidates:
        file = run_dir / SUMMARY_FILE
        if file.is_file():
            try:
                return run_dir, RunSummary.model_validate(json.loads(file.read_text()))
            except (ValueError, OSError) as exc:
                raise RunError(f"{file}: unreadable run summary ({exc})") from None
    tried = " and ".join(str(c / SUMMARY_FILE) for c in candidates)
    raise UsageError(f"{run}: no such run (no {tried})")


def initial_summary(plan: Plan, run_id: str, spec_file: str, spec_sha256: str, engine: str) -> RunSummary:
    """The summary of a run that has not started: every step Pending."""
    return RunSummary(
        run_id=run_id,
        spec=spec_file,
        spec_sha256=spec_sha256,
        engine=engine,
        steps={
            s.key: StepRecord(key=s.key, op=s.op.name, summary=s.summary, depends=s.depends)
            for s in plan.steps
        },
    )
