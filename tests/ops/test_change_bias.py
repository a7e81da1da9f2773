"""ChangeBiasOP: `dp --pt change-bias MODEL -s DATA -m change` writes a new frozen model."""

from __future__ import annotations

import pytest
from dflow.python import FatalError

from lamflow.ops.change_bias import ChangeBiasOP, ChangeBiasParams
from lamflow.ops.data.datasets import DatasetFormat
from tests.conftest import DEMO_DATA


def test_change_bias_on_training_frames(demo_in_process):
    plan, outputs, calls, root = demo_in_process
    call = next(c for c in calls if c[1] == "change-bias")
    assert call[2] == str(outputs["freeze-water"].model.resolve())
    assert call[3:] == ["-s", str(DEMO_DATA / "gete/train"), "-m", "change", "-n", "0", "-o", "model.pth"]
    out = outputs["change-bias-pretrain-water-on-gete"]
    assert out.model.exists() and "Change output bias" in out.log.read_text()


def test_dataset_with_explicit_type_map_is_shadowed(run_op, demo_in_process, tmp_path):
    plan, outputs, calls, root = demo_in_process
    params = ChangeBiasParams(
        dataset="gete", dataset_formats={"gete": DatasetFormat(type_map=["Ge", "Te"])}, mode="set"
    )
    out = run_op(
        ChangeBiasOP, params, model=outputs["freeze-water"].model, datasets={"gete": DEMO_DATA / "gete/train"}
    )
    shadow = out.model.parent / "systems" / "gete"
    assert (next(shadow.iterdir()) / "type_map.raw").read_text().split() == ["Ge", "Te"]
    with pytest.raises(FatalError, match="not found"):
        run_op(
            ChangeBiasOP, params, model=tmp_path / "missing.pth", datasets={"gete": DEMO_DATA / "gete/train"}
        )
