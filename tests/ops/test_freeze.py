"""FreezeOP: `dp --pt freeze` of one head of the pretraining checkpoint."""

from __future__ import annotations

import zipfile


def test_freeze_each_head(demo_in_process):
    plan, outputs, calls, root = demo_in_process
    freezes = [c for c in calls if c[1] == "freeze"]
    assert freezes[:2] == [
        ["--pt", "freeze", "-c", ".", "-o", "model.pth", "--head", "water"],
        ["--pt", "freeze", "-c", ".", "-o", "model.pth", "--head", "molecules"],
    ]
    for key in ("freeze-water", "freeze-molecules"):
        model = outputs[key].model
        assert model.name == "model.pth" and zipfile.is_zipfile(model)
        assert not (model.parent / "model.ckpt.pt").exists(), "the checkpoint link is removed after freezing"
