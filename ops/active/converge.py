"""When the loop stops, and why: converged when the accurate fraction of an iteration's explored frames
reaches a threshold (dpgen2's criterion) or the held-out force RMSE falls to one (PFD-kit's), whichever
holds first; otherwise it stops at ``max_iterations``, which is *not* convergence and is said so. A
criterion whose number is missing (no held-out data) or not finite never holds.
"""

from __future__ import annotations

import math
from dataclasses import dataclass


@dataclass(frozen=True)
class Criteria:
    """``max_iterations`` >= 1; ``accurate_fraction`` in (0, 1]; ``test_force_rmse`` > 0 (eV/Å)."""

    max_iterations: int
    accurate_fraction: float | None = None
    test_force_rmse: float | None = None

    def __post_init__(self) -> None:
        if self.max_iterations < 1:
            raise ValueError(f"max_iterations must be >= 1 (got {self.max_iterations})")
        if self.accurate_fraction is not None and not 0 < self.accurate_fraction <= 1:
            raise ValueError(f"accurate_fraction must be in (0, 1] (got {self.accurate_fraction})")
        if self.test_force_rmse is not None and not self.test_force_rmse > 0:
            raise ValueError(f"test_force_rmse must be > 0 eV/Å (got {self.test_force_rmse})")


@dataclass(frozen=True)
class Decision:
    stop: bool
    converged: bool
    reason: str


def decide(
    criteria: Criteria, iteration: int, accurate_fraction: float | None, test_force_rmse: float | None
) -> Decision:
    """After iteration ``iteration`` (1-based) with these numbers: stop or go on, and the reason in words."""
    held, missed = [], []
    if criteria.accurate_fraction is not None:
        wanted = criteria.accurate_fraction
        if not _finite(accurate_fraction):
            missed.append(f"accurate fraction {_missing(accurate_fraction)} (wanted >= {wanted})")
        elif accurate_fraction >= wanted:  # type: ignore[operator]
            held.append(f"accurate fraction {accurate_fraction:.3f} >= {wanted}")
        else:
            missed.append(f"accurate fraction {accurate_fraction:.3f} < {wanted}")
    if criteria.test_force_rmse is not None:
        wanted = criteria.test_force_rmse
        if not _finite(test_force_rmse):
            missed.append(f"test force RMSE {_missing(test_force_rmse)} (wanted <= {wanted} eV/Å)")
        elif test_force_rmse <= wanted:  # type: ignore[operator]
            held.append(f"test force RMSE {test_force_rmse:.4g} <= {wanted} eV/Å")
        else:
            missed.append(f"test force RMSE {test_force_rmse:.4g} > {wanted} eV/Å")
    if held:
        return Decision(
            stop=True, converged=True, reason=f"converged at iteration {iteration}: {'; '.join(held)}"
        )
    why = "; ".join(missed) if missed else "no convergence criterion set"
    if iteration >= criteria.max_iterations:
        return Decision(
            stop=True,
            converged=False,
            reason=f"not converged: max_iterations ({criteria.max_iterations}) reached ({why})",
        )
    return Decision(stop=False, converged=False, reason=f"iteration {iteration}: {why}")


def _finite(value: float | None) -> bool:
    return value is not None and math.isfinite(value)


def _missing(value: float | None) -> str:
    return "missing" if value is None else f"not finite ({value})"
