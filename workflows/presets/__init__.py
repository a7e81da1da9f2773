"""Model presets (descriptor, fitting net, loss and learning-rate defaults) shipped as JSON files."""

from __future__ import annotations

import copy
import json
from functools import cache
from importlib import resources
from typing import Any


@cache
def _load(name: str) -> dict[str, Any]:
    text = resources.files(__name__).joinpath(f"{name}.json").read_text(encoding="utf-8")
    return json.loads(text)


def preset(name: str) -> dict[str, Any]:
    """A fresh copy of preset ``name`` (keys: descriptor, fitting_net, loss, learning_rate, _source)."""
    return copy.deepcopy(_load(name))


def preset_names() -> list[str]:
    return sorted(
        p.name[: -len(".json")] for p in resources.files(__name__).iterdir() if p.name.endswith(".json")
    )
