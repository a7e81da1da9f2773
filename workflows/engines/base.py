"""The engine seam: what every engine (local, Argo) offers, and the records it reports with.

``submit`` runs (local) or starts (Argo) a compiled plan in a run directory that already holds the spec
and an initial summary; ``status``/``wait``/``logs``/``stop`` work on a run directory.
"""

from __future__ import annotations

import sys
import time
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TextIO

from lamflow.workflows.compile.plan import Plan
from lamflow.workflows.engines.summary import RunSummary
from lamflow.workflows.store.step_cache import StepCache


@dataclass(frozen=True)
class StepEvent:
    """A step changed phase (what the terminal shows, one line each)."""

    key: str
    phase: str
    elapsed_s: float  # since the run started
    duration_s: float | None
    summary: str
    error: str | None = None
    warnings: tuple[str, ...] = ()  # DeePMD-kit warnings found in the finished step's log


Reporter = Callable[[StepEvent, TextIO], None]


def report_transitions(summary: RunSummary, seen: dict[str, str], started: float, report: Reporter) -> None:
    """Report every step whose phase differs from ``seen`` (updated), timed from ``started`` (monotonic):
    how a run followed from outside its engine (``lamflow watch``, an Argo run) shows its progress."""
    for key, record in summary.steps.items():
        if record.phase != seen.get(key):
            seen[key] = record.phase
            elapsed = time.monotonic() - started
            event = StepEvent(key, record.phase, elapsed, record.duration_s, record.summary, record.error)
            report(event, sys.stdout)


class Engine(ABC):
    name: str

    @abstractmethod
    def submit(
        self,
        plan: Plan,
        run_dir: Path,
        summary: RunSummary,
        report: Reporter | None = None,
        cache: StepCache | None = None,
        resume: bool = False,
        wait: bool = True,
    ) -> RunSummary:
        """Run (or start) ``plan``; returns the summary (final for a blocking engine). ``cache`` reuses and
        stores step results; ``resume`` continues an earlier attempt in ``run_dir``; ``wait=False`` returns
        once a remote engine has accepted the run (the local engine always runs it to the end)."""

    @abstractmethod
    def status(self, run_dir: Path) -> RunSummary:
        """The run's current summary."""

    @abstractmethod
    def wait(self, run_dir: Path, timeout_s: float | None = None) -> RunSummary:
        """Block until the run has finished (or the timeout passed); returns the summary."""

    @abstractmethod
    def logs(self, run_dir: Path, step: str | None = None) -> str:
        """The run's log, or one step's."""

    @abstractmethod
    def running(self, run_dir: Path) -> bool:
        """Whether the run is being executed now (by any process)."""

    @abstractmethod
    def stop(self, run_dir: Path) -> None:
        """Ask a running run to stop; its unfinished steps end as interrupted."""
