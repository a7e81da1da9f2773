"""Build DeePMD-kit (PyTorch backend) training inputs from a resolved spec. Pure: no I/O.

``systems`` lists are left empty: the step fills them with the paths its staged datasets have there.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, Protocol

from lamflow.ops.runtime import files
from lamflow.workflows.presets import preset
from lamflow.workflows.spec.training import TrainingSpec

if TYPE_CHECKING:  # an annotation only: the compile layer's inputs need no op module
    from lamflow.ops.test import PropertyTarget


class Architecture(Protocol):
    """A preset plus descriptor/fitting-net fragments: the spec's ``model:`` or a distillation's student."""

    @property
    def preset(self) -> str | None: ...

    @property
    def descriptor(self) -> dict[str, Any]: ...

    @property
    def fitting_net(self) -> dict[str, Any]: ...


SHARED_TYPE_MAP = "type_map_all"
SHARED_DESCRIPTOR = "shared_descriptor"


def deep_merge(base: Mapping[str, Any], override: Mapping[str, Any]) -> dict[str, Any]:
    """``base`` updated recursively with ``override`` (dicts merge, everything else replaces)."""
    merged = copy.deepcopy(dict(base))
    for key, value in override.items():
        if isinstance(value, Mapping) and isinstance(merged.get(key), Mapping):
            merged[key] = deep_merge(merged[key], value)
        else:
            merged[key] = copy.deepcopy(value)
    return merged


def _defaults(model: Architecture) -> dict[str, Any]:
    if model.preset is None:
        return {
            "descriptor": {},
            "fitting_net": {},
            "loss": {},
            "learning_rate": {"start": 1e-3, "stop": 1e-5},
        }
    return preset(model.preset)


def architecture(model: Architecture) -> tuple[dict[str, Any], dict[str, Any]]:
    """(descriptor, fitting_net) of the model: preset deep-merged with the spec's fragments."""
    base = _defaults(model)
    return deep_merge(base["descriptor"], model.descriptor), deep_merge(
        base["fitting_net"], model.fitting_net
    )


def learning_rate_section(model: Architecture, training: TrainingSpec) -> dict[str, Any]:
    base = _defaults(model)["learning_rate"]
    lr = training.learning_rate
    return {
        "type": "exp",
        "start_lr": lr.start if lr.start is not None else base["start"],
        "stop_lr": lr.stop if lr.stop is not None else base["stop"],
        "decay_steps": lr.decay_steps
        if lr.decay_steps is not None
        else min(5000, max(1, training.steps // 20)),
    }


def loss_section(model: Architecture, training: TrainingSpec) -> dict[str, Any]:
    prefs = dict(_defaults(model)["loss"])
    prefs.update({k: v for k, v in training.loss.model_dump().items() if v is not None})
    return {"type": "ener", **prefs}


def _data_section(training: TrainingSpec, with_validation: bool) -> dict[str, Any]:
    section: dict[str, Any] = {"training_data": {"systems": [], "batch_size": training.batch_size}}
    if with_validation:
        section["validation_data"] = {"systems": [], "batch_size": training.batch_size}
    return section


def _training_section(training: TrainingSpec) -> dict[str, Any]:
    return {
        "numb_steps": training.steps,
        "seed": training.seed,
        "disp_file": files.LCURVE,
        "disp_freq": training.disp_freq or max(1, min(100, training.steps // 10)),
        "save_freq": training.save_freq or training.steps,
    }


def single_task_input(
    model: Architecture,
    type_map: list[str],
    training: TrainingSpec,
    *,
    with_validation: bool,
    descriptor: Mapping[str, Any] | None = None,
    fitting_net: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """A single-task input; pass empty ``descriptor``/``fitting_net`` to take them from a checkpoint."""
    default_descriptor, default_fitting = architecture(model)
    section = {**_training_section(training), **_data_section(training, with_validation)}
    return {
        "model": {
            "type_map": list(type_map),
            "descriptor": dict(default_descriptor if descriptor is None else descriptor),
            "fitting_net": dict(default_fitting if fitting_net is None else fitting_net),
        },
        "learning_rate": learning_rate_section(model, training),
        "loss": loss_section(model, training),
        "training": deep_merge(section, training.extra),
    }


def multitask_input(
    model: Architecture,
    type_map: list[str],
    training: TrainingSpec,
    heads: Mapping[str, tuple[float, bool, Mapping[str, Any]]],
) -> dict[str, Any]:
    """DeePMD-kit multi-task input: shared descriptor and type map, one fitting net + loss + data per head.

    ``heads``: name -> (sampling weight, has validation data, fitting-net fragment for that head).
    """
    descriptor, fitting = architecture(model)
    total = sum(weight for weight, _, _ in heads.values())
    loss = loss_section(model, training)
    section = {
        **_training_section(training),
        "model_prob": {head: weight / total for head, (weight, _, _) in heads.items()},
        "data_dict": {head: _data_section(training, has_val) for head, (_, has_val, _) in heads.items()},
    }
    return {
        "model": {
            "shared_dict": {SHARED_TYPE_MAP: list(type_map), SHARED_DESCRIPTOR: descriptor},
            "model_dict": {
                head: {
                    "type_map": SHARED_TYPE_MAP,
                    "descriptor": SHARED_DESCRIPTOR,
                    "fitting_net": deep_merge(fitting, fragment),
                }
                for head, (_, _, fragment) in heads.items()
            },
        },
        "learning_rate": learning_rate_section(model, training),
        "loss_dict": {head: dict(loss) for head in heads},
        "training": deep_merge(section, training.extra),
    }


PROPERTY_FITTING_KEYS = ("neuron", "activation_function", "resnet_dt", "precision")
PROPERTY_LOSS = {"type": "property", "loss_func": "smooth_mae", "metric": ["mae"], "beta": 1.0}  # as
# DeePMD-kit's examples/property; lcurve.out then holds mae_trn (and mae_val)


def property_fitting(model: Architecture, target: PropertyTarget, seed: int) -> dict[str, Any]:
    """A property fitting net (DeePMD-kit ``fitting_net.type: property``) as wide and deep as the model's
    energy fitting net: ``task_dim`` values per frame read from ``<name>.npy``; an intensive property
    averages the atomic contributions, an extensive one sums them."""
    _, energy_fitting = architecture(model)
    return {
        "type": "property",
        "property_name": target.name,
        "task_dim": target.dim,
        "intensive": target.intensive,
        **{k: copy.deepcopy(energy_fitting[k]) for k in PROPERTY_FITTING_KEYS if k in energy_fitting},
        "seed": seed,
    }
