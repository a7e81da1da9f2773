"""Typed op contracts: dflow signatures derived from the models, for every op in lamflow.ops."""

from __future__ import annotations

import importlib
import pkgutil
from pathlib import Path
from typing import Literal

import pytest
from dflow.python import Artifact, Parameter

import lamflow.ops
from lamflow.ops.runtime.contract import LamflowOP, OpModel, signature, to_opio


def all_ops() -> list[type[LamflowOP]]:
    found = []
    for module in pkgutil.iter_modules(lamflow.ops.__path__):
        mod = importlib.import_module(f"lamflow.ops.{module.name}")
        found += [
            v
            for v in vars(mod).values()
            if isinstance(v, type)
            and issubclass(v, LamflowOP)
            and v is not LamflowOP
            and v.__module__ == mod.__name__
        ]
    return found


def test_every_op_declares_a_consistent_contract():
    ops = all_ops()
    assert {op.name for op in ops} == {
        "pretrain", "freeze", "finetune", "change-bias", "test",
        "explore", "collect", "label", "student", "compress", "evaluate", "scratch", "convert",
        # the concurrent-learning loop's (issue 24)
        "model-devi", "select-frames", "label-dft", "converge", "explore-loop", "merge-labels",
        # a training step as a PyTorchJob (issue 25): ops/job.py, one pair per training op
        *(f"{op}-{part}" for op in ("pretrain", "finetune", "scratch", "student")
          for part in ("stage", "collect")),
    }  # fmt: skip
    for op in ops:
        assert issubclass(op.Input, op.Params), f"{op.__name__}.Input must extend its Params"
        module = "job" if op.name.endswith(("-stage", "-collect")) else op.name.replace("-", "_")
        assert op.__module__ == f"lamflow.ops.{module}", "op module named like the op"
        assert op.get_input_sign() and op.get_output_sign()
        for name, field in op.Params.model_fields.items():  # dflow hands a None text parameter over as 'null'
            assert field.annotation != (str | None), f"{op.__name__}.Params.{name}: use str with '' for none"


class Params(OpModel):
    name: str
    count: int = 3
    mode: Literal["a", "b"] = "a"
    table: dict[str, float] = {}


class Input(Params):
    data: Path
    bundle: dict[str, Path]
    extra: Path | None = None


def test_signature_splits_artifacts_from_parameters():
    sign = signature(Input)
    assert isinstance(sign["data"], Artifact) and not sign["data"].optional
    assert isinstance(sign["bundle"], Artifact)
    assert isinstance(sign["extra"], Artifact) and sign["extra"].optional
    assert isinstance(sign["name"], Parameter) and sign["name"].type is str
    assert sign["count"].type is int and sign["count"].default == 3
    assert sign["mode"].type is str and sign["mode"].default == "a"
    assert sign["table"].type is dict


def test_to_opio_keeps_paths_and_dumps_parameters():
    class Out(OpModel):
        model: Path
        metrics: dict[str, float]
        params: Params

    values = to_opio(Out(model=Path("m.pth"), metrics={"x": 1.0}, params=Params(name="n")))
    assert values == {
        "model": Path("m.pth"),
        "metrics": {"x": 1.0},
        "params": {"name": "n", "count": 3, "mode": "a", "table": {}},
    }


def test_params_are_strict_about_unknown_keys():
    with pytest.raises(ValueError, match="Extra inputs"):
        Params(name="x", nmae="typo")  # type: ignore[call-arg]
