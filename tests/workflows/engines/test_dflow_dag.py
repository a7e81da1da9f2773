"""The local engine's DAG: dflow's, snapshotting itself by pickle, not deep copy, when it starts steps."""

from __future__ import annotations

import copy
import inspect
import pickle

import dflow.dag

from lamflow.workflows.engines.dflow_dag import LocalDAG, PickledSnapshot


def test_dflow_still_snapshots_its_dag_with_the_module_level_deepcopy_that_local_dag_replaces():
    assert dflow.dag.deepcopy is copy.deepcopy
    assert "deepcopy(self)" in inspect.getsource(dflow.dag.DAG.resolve)


def test_a_snapshot_unpickles_as_the_object_as_it_was_when_taken():
    state = {"outputs": [1]}
    snapshot = PickledSnapshot(state)
    state["outputs"].append(2)
    assert pickle.loads(pickle.dumps(snapshot)) == {"outputs": [1]}


def test_resolve_takes_a_snapshot_and_leaves_dflow_as_it_was():
    dag = LocalDAG(name="d")
    dag.waiting = []  # nothing to start: resolve only takes its snapshot
    dag.resolve(pool=None, futures={})
    assert dflow.dag.deepcopy is copy.deepcopy
    assert isinstance(copy.deepcopy(dag), LocalDAG)  # the workflow's own copy of its DAG is a real copy
