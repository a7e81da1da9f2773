"""Stage ``test``: every model x every dataset of a group -> ``dp test`` errors, optionally after
``dp change-bias`` on another dataset (the zero-shot protocol).

Step keys: ``change-bias-<model>-on-<dataset>`` and ``test-<model>-on-<dataset>[-change-bias-<dataset>]``,
where ``<model>`` is ``<stage>-<name>`` of the model reference.
"""

from __future__ import annotations

from lamflow.ops.change_bias import ChangeBiasOP, ChangeBiasParams
from lamflow.ops.test import TestOP, TestParams
from lamflow.workflows.compile.plan import DatasetBundle, Evaluation, StepPlan
from lamflow.workflows.spec.base import model_slug, slug
from lamflow.workflows.spec.test import TestSpec
from lamflow.workflows.stages._guards import Datasets, undetermined_elements
from lamflow.workflows.stages.base import ENERGY, PlanContext, References, Stage


def change_bias_step(ctx: PlanContext, ref: str, dataset: str, origin: str) -> StepPlan:
    """``change-bias-<model>-on-<dataset>``: the model's energy bias re-fitted on the dataset's train part
    (``dp --pt change-bias -m change``); one step however many stages ask for it."""
    on = ctx.part(dataset, "train")
    return ctx.add(
        StepPlan(
            key=f"change-bias-{model_slug(ref)}-on-{slug(dataset)}",
            op=ChangeBiasOP,
            summary=f"dp change-bias {ref} -s {on} -m change",
            params=ChangeBiasParams(dataset=on, mode="change", dataset_formats=ctx.formats([on])),
            artifacts={"model": ctx.models[ref], "datasets": DatasetBundle((on,))},
            short=True,
        ),
        origin,
    )


class TestStage(Stage[list[TestSpec]]):
    __test__ = False  # not a pytest class

    key = "test"
    order = 90

    def check(self, section: list[TestSpec], refs: References) -> None:
        for i, group in enumerate(section):
            base = self.yaml_path(i)
            for j, ref in enumerate(group.models):
                refs.need_model(f"{base}.models[{j}]", ref, any_kind=True)
                if group.change_bias_on is not None and ref in refs.predicts:
                    raise refs.error(
                        f"{base}.change_bias_on",
                        f"{ref} predicts {refs.predicts[ref]}: change-bias re-fits an energy model's "
                        "per-element energies (test it without change_bias_on)",
                    )
            for j, name in enumerate(group.datasets):
                for kind in sorted({refs.predicts.get(ref, ENERGY) for ref in group.models}):
                    refs.need_dataset(f"{base}.datasets[{j}]", name, kind)
            if group.change_bias_on is not None:
                refs.need_dataset(f"{base}.change_bias_on", group.change_bias_on)

    def guard(self, section: list[TestSpec], refs: References) -> None:
        assert refs.data is not None
        for i, group in enumerate(section):
            self._guard_group(group, self.yaml_path(i), refs, refs.data)

    def _guard_group(self, group: TestSpec, base: str, refs: References, data: Datasets) -> None:
        hint = "test on held-out frames, or set allow_overlap: true to do it on purpose"
        for k, name in enumerate(group.datasets):
            dataset = refs.part(name, "test")
            for ref in group.models:
                refs.need_elements(f"{base}.datasets[{k}]", ref, dataset)
                refs.flag_unlearned(f"{base}.datasets[{k}]", ref, dataset)
                shared = refs.training_overlap(ref, dataset)
                if shared is None:
                    continue
                if not group.allow_overlap:
                    raise refs.overlap_error(f"{base}.datasets[{k}]", "test data", dataset, shared, ref, hint)
                refs.overlaps.add((ref, dataset))
            if group.change_bias_on is None:
                continue
            on = refs.part(group.change_bias_on, "train")
            reason = data.overlap(on, dataset)
            if reason is not None and not group.allow_overlap:
                raise refs.error(
                    f"{base}.change_bias_on",
                    f"re-fit data {on!r} shares frames with test data {dataset!r} ({base}.datasets[{k}]): "
                    f"{reason}; re-fit on training data",
                )
            refit = data.compositions(on)
            undetermined = undetermined_elements(refit, data.compositions(dataset))
            if undetermined:
                distinct = len({tuple(sorted(c.items())) for c in refit})
                raise refs.error(
                    f"{base}.change_bias_on",
                    f"the {distinct} composition(s) in {on!r} do not determine the energy bias of "
                    f"{', '.join(undetermined)} for the compositions in {dataset!r} (a least-squares re-fit "
                    "would be arbitrary there); re-fit on data with more varied compositions, or test "
                    "without change_bias_on",
                )

    def plan(self, section: list[TestSpec], ctx: PlanContext) -> None:
        for i, group in enumerate(section):
            base = self.yaml_path(i)
            for j, ref in enumerate(group.models):
                model = ctx.models[ref]
                suffix = ""
                if group.change_bias_on is not None:
                    bias = change_bias_step(ctx, ref, group.change_bias_on, f"{base}.models[{j}]")
                    model = bias.output("model")
                    suffix = f"-change-bias-{slug(group.change_bias_on)}"
                for k, name in enumerate(group.datasets):
                    dataset = ctx.part(name, "test")
                    baseline = ctx.part(name, "train") if name in ctx.splits else ""  # the dummy model's fit
                    staged = (dataset, baseline) if baseline else (dataset,)
                    target, components = ctx.property_target(ref, name)
                    ctx.add(
                        StepPlan(
                            key=f"test-{model_slug(ref)}-on-{slug(name)}{suffix}",
                            op=TestOP,
                            summary=f"dp test {ref}"
                            + (" (bias changed)" if group.change_bias_on else "")
                            + f" on {dataset}",
                            params=TestParams(
                                dataset=dataset,
                                frames=group.frames,
                                baseline_dataset=baseline,
                                dataset_formats=ctx.formats(staged),
                                property=target,
                            ),
                            artifacts={"model": model, "datasets": DatasetBundle(staged)},
                            evaluation=Evaluation(
                                ref,
                                dataset,
                                group.change_bias_on,
                                overlap=(ref, dataset) in ctx.overlaps,
                                unlearned=ctx.unlearned.get((ref, dataset), ()),
                                property=target.name if target else None,
                                components=components,
                            ),
                            short=True,
                        ),
                        f"{base}.datasets[{k}]",
                    )


STAGE = TestStage()
