"""The DAG the local engine hands to dflow's debug mode: dflow's own ``DAG``, with a cheaper snapshot.

Each time a step of a debug-mode DAG finishes, dflow's ``DAG.resolve`` takes a ``deepcopy`` of the whole
DAG (every task, template and parameter) as the context it passes to the steps it starts next, through a
process pool that then pickles that copy again. A plan of N steps costs N deep copies of N tasks: with 37
steps, a third of the engine's CPU time went there (py-spy, ``tests/workflows/engines/test_loop.py``).

:class:`LocalDAG` makes that copy a pickle of the DAG instead: taken at the same moment (so the steps see
the DAG as it was when they were started, as with the deep copy), turned back into a DAG only in the pool
process that runs the step. Pickling was what the pool did with the copy anyway, so the snapshot costs one
pickle instead of a deep copy and a pickle. Nothing else about dflow's scheduling changes; Argo renders
the plain ``DAG`` (``compile/dflow_workflow.py``).
"""

from __future__ import annotations

import pickle
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import dflow.dag
from dflow import DAG


class PickledSnapshot:
    """An object as it was when this was made; unpickles as that object (not as a snapshot)."""

    def __init__(self, obj: Any) -> None:
        self.data = pickle.dumps(obj, protocol=pickle.HIGHEST_PROTOCOL)

    def __reduce__(self) -> tuple[Any, tuple[bytes]]:
        return pickle.loads, (self.data,)


@contextmanager
def _snapshots_instead_of_deep_copies() -> Iterator[None]:
    """Within ``DAG.resolve`` only: its module's ``deepcopy`` name makes a :class:`PickledSnapshot`."""
    original = dflow.dag.deepcopy
    dflow.dag.deepcopy = PickledSnapshot  # type: ignore[assignment]
    try:
        yield
    finally:
        dflow.dag.deepcopy = original


class LocalDAG(DAG):
    """dflow's DAG, whose ``resolve`` snapshots itself by pickling (see the module's docstring)."""

    def resolve(self, pool: Any, futures: Any) -> None:
        with _snapshots_instead_of_deep_copies():
            super().resolve(pool, futures)
