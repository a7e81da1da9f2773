"""Which explored frames to label: dpgen2's trust levels on the ensemble's maximum force deviation, a
labelling budget, and a diversity rule.

A frame whose deviation is below ``lo`` is *accurate* (the ensemble agrees: nothing to learn), at or above
``hi`` (or not finite: the MD blew up) *failed* (too far from anything the models know for a label to
help), in between a *candidate*. At most ``max_picks`` candidates are picked, highest deviation first,
never two from adjacent dumps of one trajectory (consecutive dumps are nearly the same structure). Every
frame is counted once: explored = accurate + candidate + failed, and candidate = picked + adjacent (passed
over for a neighbour already picked) + over_budget. The same budget spent at random on the same
explorations (:func:`random_picks`) is the baseline that says whether selection by deviation helped.
"""

from __future__ import annotations

import math
import random
from collections.abc import Sequence
from dataclasses import dataclass, field

ACCURATE, CANDIDATE, FAILED = "accurate", "candidate", "failed"
COUNTS = ("explored", ACCURATE, CANDIDATE, FAILED, "picked", "adjacent", "over_budget")


@dataclass(frozen=True)
class Frame:
    """One dumped frame of an exploration: its trajectory (branch), its dump index in that trajectory, and
    the ensemble's maximum force deviation on it (eV/Å)."""

    trajectory: str
    dump: int
    deviation: float


@dataclass(frozen=True)
class TrustLevels:
    """``lo`` < ``hi``, both in eV/Å, on the maximum atomic force deviation."""

    lo: float
    hi: float

    def __post_init__(self) -> None:
        if not (math.isfinite(self.lo) and math.isfinite(self.hi) and 0 < self.lo < self.hi):
            raise ValueError(f"trust levels need 0 < lo < hi (got lo={self.lo}, hi={self.hi})")

    def classify(self, deviation: float) -> str:
        if not math.isfinite(deviation) or deviation >= self.hi:
            return FAILED
        return ACCURATE if deviation < self.lo else CANDIDATE


@dataclass
class Selection:
    """The picked frames (highest deviation first) and every count (:data:`COUNTS`)."""

    picked: list[Frame]
    counts: dict[str, int] = field(default_factory=dict)

    @property
    def accurate_fraction(self) -> float:
        """Accurate frames over explored frames (0.0 when nothing was explored): dpgen2's criterion."""
        explored = self.counts.get("explored", 0)
        return self.counts.get(ACCURATE, 0) / explored if explored else 0.0


def select(frames: Sequence[Frame], trust: TrustLevels, max_picks: int) -> Selection:
    """Classify every frame and pick at most ``max_picks`` candidates (see the module's docstring)."""
    if max_picks < 0:
        raise ValueError(f"max_picks must be >= 0 (got {max_picks})")
    counts = dict.fromkeys(COUNTS, 0)
    counts["explored"] = len(frames)
    candidates = []
    for frame in frames:
        kind = trust.classify(frame.deviation)
        counts[kind] += 1
        if kind == CANDIDATE:
            candidates.append(frame)
    candidates.sort(key=lambda f: (-f.deviation, f.trajectory, f.dump))
    picked: list[Frame] = []
    taken: set[tuple[str, int]] = set()
    for frame in candidates:
        if (frame.trajectory, frame.dump - 1) in taken or (frame.trajectory, frame.dump + 1) in taken:
            counts["adjacent"] += 1  # never a pick, whatever the budget
        elif len(picked) == max_picks:
            counts["over_budget"] += 1
        else:
            picked.append(frame)
            taken.add((frame.trajectory, frame.dump))
    counts["picked"] = len(picked)
    return Selection(picked=picked, counts=counts)


def random_picks(frames: Sequence[Frame], trust: TrustLevels, budget: int, seed: int) -> list[Frame]:
    """The baseline at equal budget: ``budget`` frames drawn at random (seeded) from the same explorations,
    among those that are not failed (a failed frame is one no label would be spent on either way)."""
    pool = sorted(
        (f for f in frames if trust.classify(f.deviation) != FAILED), key=lambda f: (f.trajectory, f.dump)
    )
    return random.Random(seed).sample(pool, min(budget, len(pool)))
