"""ResolvedSpec -> Plan: every stage, in order, adds its steps. Pure: no I/O, no dflow, no network."""

from __future__ import annotations

from dataclasses import replace

from lamflow.workflows.compile.conversion import CONVERT_STEP, plan_conversion
from lamflow.workflows.compile.groups import group_steps
from lamflow.workflows.compile.notices import data_notices, parallel_notices
from lamflow.workflows.compile.plan import Plan
from lamflow.workflows.resolve.resolved import ResolvedSpec
from lamflow.workflows.spec.base import slug
from lamflow.workflows.stages import all_stages
from lamflow.workflows.stages._external import plan_external_models
from lamflow.workflows.stages.base import PlanContext


def build_plan(resolved: ResolvedSpec) -> Plan:
    spec = resolved.spec
    ctx = PlanContext(
        shown=resolved.source,
        base_dir=resolved.base_dir,
        model=spec.model,
        type_map=resolved.type_map,
        dataset_formats=resolved.dataset_formats,
        overlaps=resolved.overlaps,
        unlearned=resolved.unlearned,
        dataset_info=resolved.dataset_info,
        splits=frozenset(resolved.splits),
        properties={name: dict(ds.properties) for name, ds in spec.datasets.items()},
    )
    plan_external_models(spec.models, ctx)
    for stage in all_stages():
        stage.plan(spec.stages.section(stage.key), ctx)
    planned = tuple(ctx.steps)
    steps, sources = plan_conversion(planned, resolved)
    shift = len(steps) - len(planned)  # the conversion step, first
    loops = tuple(replace(loop, position=loop.position + shift) for loop in ctx.loops)
    origins = {CONVERT_STEP: "datasets", **ctx.origins} if sources else dict(ctx.origins)
    plan = Plan(
        name=slug(spec.name),
        steps=steps,
        dataset_paths={**resolved.dataset_paths, **sources},
        origins=origins,
        notices=(
            *resolved.notices,
            *ctx.notices,
            *data_notices(planned, ctx.origins, resolved.dataset_info),
            *parallel_notices(planned, spec.resources),
        ),
        groups=group_steps(steps),
        resources=spec.resources,
        splits=dict(resolved.splits),
        subsets=dict(resolved.subsets),
        loops=loops,
    )
    plan.check()
    return plan
