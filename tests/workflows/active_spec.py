"""A small concurrent-learning spec for the fast tier: the demo's water, a pretrain to start from, an
ensemble of 2 and the fake DFT code (tests/fake_dft.py) as the command labeler; trust levels so low that
every explored frame is a candidate, so the loop runs to ``max_iterations`` unless told otherwise."""

from __future__ import annotations

import shlex
import sys
from pathlib import Path
from typing import Any

from tests.conftest import DEMO_DATA

FAKE_DFT = Path(__file__).resolve().parents[1] / "fake_dft.py"


def fake_dft_command(prefix: str = "") -> str:
    return prefix + f"{shlex.quote(sys.executable)} {shlex.quote(str(FAKE_DFT))}"


def active_spec(**active: Any) -> dict[str, Any]:
    entry: dict[str, Any] = {
        "name": "w",
        "datasets": ["water"],
        "test": "water-valid",
        "ensemble": 2,
        "training": {"steps": 10},
        "explore": {
            "datasets": ["water"],
            "temperatures": [300],
            "steps": 20,
            "dump_every": 5,
            "steps_by_iteration": [10, 20],
        },
        "select": {"lo": 1e-6, "hi": 100.0, "max_picks": 2},
        "label": {
            "command": {
                "command": fake_dft_command(),
                "input_format": "vasp/poscar",
                "input_file": "POSCAR",
                "output_format": "extxyz",
                "output_file": "out.xyz",
            }
        },
        "converge": {"accurate_fraction": 0.99, "max_iterations": 2},
    }
    entry.update(active)
    return {
        "version": 1,
        "name": "loop",
        "datasets": {
            "water": {"path": str(DEMO_DATA / "water/train")},
            "water-valid": {"path": str(DEMO_DATA / "water/valid")},
        },
        "model": {"preset": "dpa2-tiny", "descriptor": {"repinit": {"nsel": 120}}},
        "stages": {
            "pretrain": {"heads": {"water": {"datasets": ["water"]}}, "training": {"steps": 10}},
            "active": [entry],
            "test": [{"models": ["active.w"], "datasets": ["water-valid"]}],
        },
    }
