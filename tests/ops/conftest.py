"""Running an op's ``execute`` in-process (as dflow's step script does) against the fake ``dp``."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from dflow.python import OPIO

from lamflow.ops.data.datasets import DatasetFormat
from lamflow.ops.runtime.contract import LamflowOP, OpModel
from tests.conftest import DEMO_DATA

STAGED = {
    "water": DEMO_DATA / "water/train",
    "water-valid": DEMO_DATA / "water/valid",
    "molecules": DEMO_DATA / "molecules/train",
    "gete": DEMO_DATA / "gete/train",
    "gete-test": DEMO_DATA / "gete/test",
}
TYPE_MAP = ["O", "H", "C", "Ge", "Te"]


def formats(*names: str) -> dict[str, DatasetFormat]:
    return {n: DatasetFormat() for n in names}


@pytest.fixture
def run_op(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, fake_dp):
    """``run_op(OpClass, params, **artifacts)`` -> the op's Output, run in a fresh step directory."""
    counter = iter(range(1000))

    def run(op: type[LamflowOP], params: OpModel, **artifacts: Any) -> Any:
        step_dir = tmp_path / f"step-{next(counter)}-{op.name}"
        step_dir.mkdir()
        monkeypatch.chdir(step_dir)
        out = op().execute(OPIO({**params.model_dump(mode="json"), **artifacts}))
        return op.Output.model_validate(dict(out))

    return run


@pytest.fixture(scope="session")
def demo_in_process(tmp_path_factory):
    """Every step of the demo plan, run in-process in plan order against the fake dp (once per session).

    Returns (plan, {step key: Output}, [dp argv of each call], root directory).
    """
    from lamflow.workflows.api import validate
    from lamflow.workflows.compile.plan import DatasetBundle, LocalFile, StepOutput
    from tests.conftest import EXAMPLES, FakeDp

    root = tmp_path_factory.mktemp("demo-in-process")
    fake = FakeDp(root / "calls.jsonl")
    _, plan = validate(EXAMPLES / "demo.yaml")
    outputs: dict[str, Any] = {}
    with pytest.MonkeyPatch.context() as mp:
        for key, value in fake.env.items():
            mp.setenv(key, value)
        for step in plan.steps:
            artifacts: dict[str, Any] = {}
            for name, source in step.artifacts.items():
                if isinstance(source, StepOutput):
                    artifacts[name] = getattr(outputs[source.step], source.name)
                elif isinstance(source, DatasetBundle):
                    artifacts[name] = {n: plan.dataset_paths[n] for n in source.names}
                elif isinstance(source, LocalFile):
                    artifacts[name] = source.path
            step_dir = root / step.key
            step_dir.mkdir()
            mp.chdir(step_dir)
            out = step.op().execute(OPIO({**step.parameters, **artifacts}))
            outputs[step.key] = step.op.Output.model_validate(dict(out))
    return plan, outputs, fake.calls(), root
