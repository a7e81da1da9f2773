"""What a dataset's property arrays say about their declaration: an ``intensive: true`` property whose
values grow with the number of atoms is refused at validate.

DeePMD-kit's property fitting sums the atomic contributions of an extensive property and averages those of
an intensive one, so the declaration decides what the model can learn. The data can contradict it only
where its systems differ in size: then, for an extensive property, the value per atom varies much less
than the value itself. The check reads the per-system sums that the dataset check collected (no second
pass over the arrays); a system's size is its atom count (``type.raw``; padded atoms of a mixed-type
system count too). It decides nothing where every system has the same size, and it never says that an
extensive declaration is wrong (a sum over atoms may well be roughly constant).
"""

from __future__ import annotations

import math

from lamflow.ops.data.datasets import DatasetInfo

MIN_SIZE_RATIO = 1.2  # largest / smallest system: below it, sizes say nothing about extensivity
EXTENSIVE_RATIO = 0.5  # per-atom spread below this share of the value's spread: the value scales with size


def _spread(total: float, squares: float, count: int) -> tuple[float, float]:
    """(mean, standard deviation) from a sum and a sum of squares."""
    mean = total / count
    return mean, math.sqrt(max(squares / count - mean * mean, 0.0))


def extensive_evidence(info: DatasetInfo, name: str, components: list[str]) -> str | None:
    """Why ``name`` looks extensive in these systems (a sentence), or None where nothing says so."""
    stats = [(s.natoms, p) for s in info.systems for p in s.properties if p[0] == name]
    sizes = [natoms for natoms, _ in stats]
    if len(stats) < 2 or max(sizes) < MIN_SIZE_RATIO * min(sizes):
        return None
    frames = sum(p[1] for _, p in stats)
    for c, component in enumerate(components):
        value = _spread(sum(p[2][c] for _, p in stats), sum(p[3][c] for _, p in stats), frames)
        per_atom = _spread(
            sum(p[2][c] / n for n, p in stats), sum(p[3][c] / (n * n) for n, p in stats), frames
        )
        if value[0] == 0 or per_atom[0] == 0 or value[1] == 0:
            continue
        relative, relative_per_atom = abs(value[1] / value[0]), abs(per_atom[1] / per_atom[0])
        if relative_per_atom < EXTENSIVE_RATIO * relative:
            return (
                f"{component} grows with the atom count across systems of {min(sizes)} to {max(sizes)} "
                f"atoms: its relative spread is {relative:.3g} per frame but {relative_per_atom:.3g} per atom"
            )
    return None
