"""Explore step of the concurrent-learning loop: one MD branch as the ``explore`` step runs it, driven by
the ensemble's first model, with the MD length of the iteration (dpgen2's growing stages) and a seed of its
own in every iteration, so that iterations explore anew."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field

from lamflow.ops.data.datasets import StagedDatasets
from lamflow.ops.explore import ExploreInput, ExploreOP, ExploreParams


class LoopExploreParams(ExploreParams):
    iteration: int = Field(1, ge=1, description="The loop's iteration (set by the loop).")
    steps_by_iteration: list[int] = Field(
        default_factory=list,
        description="MD steps in iterations 1, 2, ... (the last repeats; dpgen2's growing stages); "
        "empty: `steps` in every iteration.",
    )


class LoopExploreInput(LoopExploreParams, StagedDatasets):
    teacher: Path = Field(description="The frozen model that drives the MD (the ensemble's first).")


class LoopExploreOP(ExploreOP):
    """A concurrent-learning iteration's MD branch: as ``explore``, with the MD length of the iteration
    and a seed of its own in every iteration (so that iterations explore anew)."""

    name = "explore-loop"
    Params = LoopExploreParams
    Input = LoopExploreInput  # type: ignore[assignment]

    def schedule(self, inp: ExploreInput) -> tuple[int, int]:
        assert isinstance(inp, LoopExploreInput)
        by_iteration = inp.steps_by_iteration
        steps = by_iteration[min(inp.iteration, len(by_iteration)) - 1] if by_iteration else inp.steps
        return steps, inp.seed + 1000 * (inp.iteration - 1)
