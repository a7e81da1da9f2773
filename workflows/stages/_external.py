"""``models:`` — external model files, checked and planned before the stages so that every stage can use
``models.<name>``: a frozen ``.pth`` is used as it is; a ``.pt`` checkpoint is frozen by a step
``freeze-models-<name>`` (its ``head`` for a multi-task one) and can also be fine-tuned from."""

from __future__ import annotations

from collections.abc import Mapping

from lamflow.ops.dp import DpError, model_type_map
from lamflow.ops.freeze import FreezeOP, FreezeParams
from lamflow.ops.training.checkpoint import CheckpointError, read_checkpoint
from lamflow.workflows.compile.plan import LocalFile, StepPlan
from lamflow.workflows.spec.base import slug
from lamflow.workflows.spec.external import ExternalModelSpec
from lamflow.workflows.stages.base import PlanContext, References, known

PREFIX = "models"


def check_external_models(models: Mapping[str, ExternalModelSpec], refs: References) -> None:
    """Each file exists and is a model (its heads fit ``head``); registers ``models.<name>`` and its type
    map (read from the checkpoint, or with ``dp --pt show`` from a frozen model)."""
    refs.unique_slugs("model", PREFIX, models)
    for name, spec in models.items():
        base = f"{PREFIX}.{name}"
        path = refs.resolve_file(spec.file)
        if spec.file.suffix not in (".pt", ".pth"):
            raise refs.error(
                f"{base}.file",
                f"{spec.file}: expected a DeePMD-kit checkpoint (.pt) or frozen model (.pth)",
            )
        if not path.is_file():
            raise refs.error(f"{base}.file", f"{path}: no such file")
        if spec.file.suffix == ".pth":
            if spec.head is not None:
                raise refs.error(f"{base}.head", f"{spec.file} is a frozen model: it has one head; omit head")
            try:
                type_map = tuple(model_type_map(path))
            except (DpError, ValueError, OSError) as exc:
                raise refs.error(f"{base}.file", f"{path}: not a readable frozen model ({exc})") from None
        else:
            try:
                info = read_checkpoint(path)
            except CheckpointError as exc:
                raise refs.error(f"{base}.file", str(exc)) from None
            if info.multitask and spec.head not in info.heads:
                what = "required" if spec.head is None else f"no head {spec.head!r} in it"
                raise refs.error(
                    f"{base}.head", f"{what}: {spec.file.name} is multi-task (heads: {known(info.heads)})"
                )
            if not info.multitask and spec.head is not None:
                raise refs.error(f"{base}.head", f"{spec.file.name} is single-task: omit head")
            type_map = info.type_map
            refs.checkpoints.add(f"{PREFIX}.{name}")
        refs.provide_model(base, f"{PREFIX}.{name}", None)
        if type_map:
            refs.type_maps[f"{PREFIX}.{name}"] = type_map


def plan_external_models(models: Mapping[str, ExternalModelSpec], ctx: PlanContext) -> None:
    for name, spec in models.items():
        ref, path = f"{PREFIX}.{name}", LocalFile(ctx.resolve_file(spec.file))
        if spec.file.suffix == ".pth":
            ctx.models[ref] = path
            continue
        freeze = ctx.add(
            StepPlan(
                key=f"freeze-{PREFIX}-{slug(name)}",
                op=FreezeOP,
                summary=f"dp freeze {spec.file.name}" + (f" --head {spec.head}" if spec.head else ""),
                params=FreezeParams(head=spec.head or ""),
                artifacts={"checkpoint": path},
                model_ref=ref,
                short=True,
            ),
            f"{PREFIX}.{name}",
        )
        ctx.models[ref] = freeze.output("model")
        ctx.checkpoints[ref] = path
        ctx.branches[ref] = spec.head or ""
