"""Check the complete DeePMD-kit input of every training step with DeePMD-kit's own argument checker,
at validate time, and map its complaint back to the YAML path of the spec fragment it came from.

Fine-tuning inputs take their model section from the checkpoint (``--use-pretrain-script``); their
training, loss and learning-rate sections are checked with the spec's architecture standing in for it.
Where DeePMD-kit is not installed (a client-only install) the check is skipped and says so.
"""

from __future__ import annotations

import copy
import json
import re
from functools import lru_cache
from typing import Any

from lamflow.workflows import check_cache
from lamflow.workflows.compile.deepmd_input import architecture
from lamflow.workflows.compile.plan import Plan
from lamflow.workflows.errors import SpecError
from lamflow.workflows.spec.base import MAX_STEPS
from lamflow.workflows.spec.model import ModelSpec

_LOCATION = re.compile(r"\[at (?:root )?location(?: `([^`]*)`)?\]\s*")


def _resolve_shared(model: dict[str, Any]) -> dict[str, Any]:
    """Multi-task model with shared_dict references ("name" or "name:level") replaced by their values."""
    shared = model.get("shared_dict", {})
    resolved = {}
    for head, branch in model["model_dict"].items():
        resolved[head] = {
            k: shared[v.split(":")[0]] if isinstance(v, str) and v.split(":")[0] in shared else v
            for k, v in branch.items()
        }
    return {"model_dict": resolved}


def yaml_path_of(location: str, origin: str, multitask: bool) -> str:
    """The spec path behind a DeePMD-kit argcheck location, for a step planned from ``origin``."""
    parts = [p for p in location.split("/") if p]
    if not parts:
        return f"{origin}.training.extra"
    section, rest = parts[0], parts[1:]
    if section == "model":
        if multitask and len(rest) >= 2 and rest[0] == "model_dict":
            head, rest = rest[1], rest[2:]
            if rest and rest[0] == "fitting_net":
                return ".".join([f"{origin}.heads.{head}.fitting_net", *rest[1:]])
        root = origin if origin.endswith(".student") else "model"  # a distillation's student has its own
        if rest and rest[0] in ("descriptor", "fitting_net"):
            return ".".join([root, *rest])
        return root
    if section == "training":
        return ".".join([f"{origin}.training.extra", *rest])
    if section in ("loss", "loss_dict"):
        return f"{origin}.training.loss"
    if section == "learning_rate":
        return f"{origin}.training.learning_rate"
    return f"{origin}.training.extra"


_NORMALIZED: dict[tuple[str, bool], dict[str, Any]] = {}  # inputs DeePMD-kit accepted in this process


@lru_cache(maxsize=2)
def _base_argument(multi_task: bool) -> Any:
    """DeePMD-kit's argument tree (``gen_args``: over a second to build, and the same every time)."""
    from dargs import Argument
    from deepmd.utils.argcheck import gen_args

    return Argument("base", dict, gen_args(multi_task=multi_task))


def normalize(config: dict[str, Any], multi_task: bool = False) -> dict[str, Any]:
    """``deepmd.utils.argcheck.normalize`` (the same steps: normalise, strict check, then its extra
    validators), with the argument tree built once per process and each accepted input remembered: validate
    checks every training step of a plan, and a session validates the same spec again and again."""
    key = (json.dumps(config, sort_keys=True, default=str), multi_task)
    if key in _NORMALIZED:
        return copy.deepcopy(_NORMALIZED[key])
    disk_key = {"input": key[0], "multi_task": multi_task, "deepmd": _deepmd_version()}
    known = check_cache.recall("deepmd-inputs", disk_key)
    if isinstance(known, dict):
        _NORMALIZED[key] = known
        return copy.deepcopy(known)
    from deepmd.utils import argcheck  # here: an input remembered needs no DeePMD-kit import (~0.3 s)

    base = _base_argument(multi_task)
    data = base.normalize_value(copy.deepcopy(config), trim_pattern="_*")
    base.check_value(data, strict=True)
    for name in ("validate_full_validation_config", "validate_no_multitask_lora"):
        if hasattr(argcheck, name):
            getattr(argcheck, name)(data, multi_task=multi_task)
    if hasattr(argcheck, "_check_dpa3_chg_spin_migration"):
        argcheck._check_dpa3_chg_spin_migration(data)
    _NORMALIZED[key] = copy.deepcopy(data)
    check_cache.remember("deepmd-inputs", disk_key, data)
    return data


def _deepmd_version() -> str:
    from importlib.metadata import version

    return version("deepmd-kit")


def check_deepmd_inputs(plan: Plan, model: ModelSpec, type_map: list[str], shown: str) -> bool:
    """Raise SpecError for the first training input DeePMD-kit would reject; False if not checked."""
    from importlib.util import find_spec

    if find_spec("deepmd") is None:  # found, not imported: normalize imports it when it must check
        return False
    for step in plan.steps:
        deepmd_input = step.parameters.get("deepmd_input")
        if deepmd_input is None:
            continue
        origin = plan.origins.get(step.key, step.key)
        config = copy.deepcopy(deepmd_input)
        multitask = "model_dict" in config["model"]
        if multitask:
            config["model"] = _resolve_shared(config["model"])
            sections = [config["training"]["data_dict"][h] for h in config["training"]["data_dict"]]
        else:
            if not config["model"].get("descriptor"):  # from a checkpoint: check the rest with ours
                descriptor, fitting = architecture(model)
                config["model"] = {"type_map": type_map, "descriptor": descriptor, "fitting_net": fitting}
            sections = [config["training"]]
        for section in sections:
            for kind in ("training_data", "validation_data"):
                if kind in section:
                    section[kind]["systems"] = ["placeholder"]
        try:
            normalized = normalize(config, multi_task=multitask)
        except Exception as exc:  # dargs' ArgumentError family and friends: DeePMD-kit's own message
            text = " ".join(str(exc).split())
            match = _LOCATION.search(text)
            location = (match.group(1) or "") if match else ""
            message = _LOCATION.sub("", text).strip()
            path = yaml_path_of(location, origin, multitask)
            raise SpecError(
                shown, path, f"DeePMD-kit rejects the input of step {step.key}: {message}"
            ) from None
        training = normalized["training"]
        for key in ("numb_steps", "disp_freq", "save_freq"):
            value = training.get(key)
            if value is not None and not (isinstance(value, int) and 1 <= value <= MAX_STEPS):
                raise SpecError(
                    shown,
                    f"{origin}.training.extra.{key}",
                    f"{key} of step {step.key} must be a whole number from 1 to {MAX_STEPS} (got {value!r})",
                )
    return True
