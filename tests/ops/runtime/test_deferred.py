"""Packages deferred until first use (lamflow.ops.runtime.deferred): dflow's ``import kubernetes`` costs
nothing until something uses it, and then it is the real package, through every way of reaching it."""

from __future__ import annotations

import subprocess
import sys

import pytest

from lamflow.ops.runtime import deferred

CHECK = """
import sys
import lamflow.ops
import dflow, dflow.python
from lamflow.ops.runtime import deferred
assert not deferred.loaded("kubernetes"), "importing dflow imported kubernetes"
assert "kubernetes.client" not in sys.modules
from dflow import op_template
secret = op_template.kubernetes.client.V1Secret(string_data={"k": "v"})  # as dflow uses it
assert deferred.loaded("kubernetes") and secret.string_data == {"k": "v"}
import kubernetes.client
from kubernetes import config
assert kubernetes.client.CoreV1Api is op_template.kubernetes.client.CoreV1Api
assert callable(config.new_client_from_config)
print("ok")
"""


def test_dflow_imports_without_kubernetes_and_kubernetes_works_when_used():
    done = subprocess.run([sys.executable, "-c", CHECK], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip() == "ok"


def test_a_submodule_import_loads_the_real_package(monkeypatch):
    for name in [n for n in sys.modules if n == "xmlrpc" or n.startswith("xmlrpc.")]:
        monkeypatch.delitem(sys.modules, name)
    assert deferred.defer("xmlrpc")
    stand_in = sys.modules["xmlrpc"]
    assert not deferred.loaded("xmlrpc")
    import xmlrpc.client  # the import under test

    assert deferred.loaded("xmlrpc") and stand_in.client is xmlrpc.client


@pytest.mark.parametrize("name", ["sys", "lamflow_no_such_package"])
def test_nothing_is_deferred_that_is_imported_already_or_missing(name):
    assert not deferred.defer(name)
    assert name not in sys.modules or not isinstance(sys.modules[name], deferred._Deferred)
