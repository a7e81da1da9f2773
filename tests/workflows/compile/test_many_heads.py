"""A multi-task pretraining with 30 heads over 60 elements (bench/many_heads.py's spec): it validates, its
multi-task input passes DeePMD-kit's argument checker (inside ``validate``), and it compiles and renders
(issue 25; the timing is the benchmark's, bench/README.md)."""

from __future__ import annotations

import importlib.util
import json

from lamflow.workflows import api
from lamflow.workflows.argo.render import RenderOptions
from lamflow.workflows.settings import Settings
from tests.conftest import REPO


def _bench():
    spec = importlib.util.spec_from_file_location("many_heads", REPO / "bench" / "many_heads.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_thirty_heads_over_sixty_elements_validate_compile_and_render(tmp_path):
    path = _bench().many_heads_spec(tmp_path, 30)
    resolved, plan = api.validate(path)
    assert len(resolved.type_map) == 60
    pretrain = plan.step("pretrain")
    heads = pretrain.params.deepmd_input["model"]["model_dict"]
    assert len(heads) == 30 and all(h["type_map"] == "type_map" or h["type_map"] for h in heads.values())
    manifest = api.render(path, Settings(image="lamflow-ops:test"), RenderOptions())
    assert json.dumps(manifest).count('"name": "pretrain"') >= 1
