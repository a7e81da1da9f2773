"""Stage ``transfer``: transferability studies. For each model x downstream dataset (which must be split):

- zero-shot: ``dp test`` of the model as it is (``...-unshifted``) and after ``dp change-bias`` on the train
  part (``...-zero-shot``), both on the test part;
- learning curve: ``dp train --finetune`` from the model's checkpoint on N train frames (nested random
  subsets, one per repeat), each a parallel step, tested on the same test part;
- from-scratch baseline: the spec's ``model:`` architecture trained on the same subsets with the same
  settings (once per dataset, shared by the study's models).

A property study (``property: <name>``) has no zero-shot protocol: its fine-tunes start from the model's
descriptor with a new property fitting net (``--model-branch RANDOM``: DeePMD-kit keeps the input's fitting
net and takes the descriptor from the checkpoint's first branch), its scratch models carry the same
fitting net, and its tests report the property per component against a dummy that predicts the train mean.

Step keys: ``transfer-<study>-<model>-<dataset>-{unshifted,zero-shot,n<N>-r<k>,n<N>-r<k>-test}`` and
``transfer-<study>-scratch-<dataset>-n<N>-r<k>[-test]``. Gates are read after the run (``gates.py``).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from lamflow.ops.dp import RANDOM_BRANCH
from lamflow.ops.finetune import FinetuneOP, FinetuneParams
from lamflow.ops.scratch import ScratchOP, ScratchParams
from lamflow.ops.test import PropertyTarget, TestOP, TestParams
from lamflow.ops.training.common import HeadData
from lamflow.workflows.compile.deepmd_input import (
    PROPERTY_LOSS,
    loss_section,
    property_fitting,
    single_task_input,
)
from lamflow.workflows.compile.plan import ArtifactSource, DatasetBundle, Evaluation, StepPlan
from lamflow.workflows.spec.base import model_slug, slug
from lamflow.workflows.spec.transfer import PROPERTY_METRICS, TransferSpec
from lamflow.workflows.stages._guards import energy_loss_problem, metric_problem, undetermined_elements
from lamflow.workflows.stages.base import ENERGY, PlanContext, References, Stage, known
from lamflow.workflows.stages.test import change_bias_step

SCRATCH = "scratch"  # the model column of from-scratch rows


def subset_name(dataset: str, size: int, repeat: int) -> str:
    """The dataset a learning-curve step trains on: ``size`` frames of the train part, repeat ``repeat``."""
    return f"{dataset}@train-n{size}-r{repeat}"


class TransferStage(Stage[list[TransferSpec]]):
    key = "transfer"
    order = 80

    def subsets(self, section: list[TransferSpec]) -> Iterator[tuple[str, int, int]]:
        """(dataset, size, repeat) of every train subset the studies need (the loader writes them)."""
        for study in section:
            if study.learning_curve is None:
                continue
            for name in study.datasets:
                for size, repeat, _ in self._curve(study):
                    yield name, size, repeat

    def check(self, section: list[TransferSpec], refs: References) -> None:
        names: dict[str, int] = {}
        for i, study in enumerate(section):
            base = self.yaml_path(i)
            refs.claim_name(self.key, names, study.name, i)
            if study.property is not None:
                self._check_property_study(study, base, refs)
            if not study.zero_shot and study.learning_curve is None:
                raise refs.error(base, "nothing to do: set zero_shot: true or give a learning_curve")
            for j, ref in enumerate(study.models):
                refs.need_model(f"{base}.models[{j}]", ref, any_kind=study.property is not None)
                if study.learning_curve is not None and not refs.has_checkpoint(ref):
                    raise refs.error(
                        f"{base}.models[{j}]",
                        f"{ref} has no training checkpoint: a learning curve fine-tunes from one (declare "
                        "the .pt checkpoint under models:, or study it without learning_curve)",
                    )
            if len(set(study.models)) != len(study.models):
                raise refs.error(f"{base}.models", "a model is listed twice")
            for j, name in enumerate(study.datasets):
                refs.need_dataset(f"{base}.datasets[{j}]", name, study.property or ENERGY)
                if getattr(refs.datasets[name], "split", None) is None:
                    raise refs.error(
                        f"{base}.datasets[{j}]",
                        f"{name!r} has no held-out frames: give datasets.{name}.split (a transfer study "
                        "tests on the test part and trains on the train part)",
                    )
            if len(set(study.datasets)) != len(study.datasets):
                raise refs.error(f"{base}.datasets", "a dataset is listed twice")
            for k, gate in enumerate(study.gates):
                where = f"{base}.gates[{k}]"
                if gate.model not in study.models:
                    raise refs.error(f"{where}.model", f"{gate.model!r} is not one of {known(study.models)}")
                if gate.dataset not in study.datasets:
                    raise refs.error(
                        f"{where}.dataset", f"{gate.dataset!r} is not one of {known(study.datasets)}"
                    )
                if study.property is not None and gate.metric not in PROPERTY_METRICS:
                    raise refs.error(
                        f"{where}.metric",
                        f"{gate.metric} is an energy metric; the study tests {study.property}: gate on one "
                        f"of {known(PROPERTY_METRICS)}",
                    )
                if study.property is None and gate.metric in PROPERTY_METRICS[:3]:
                    raise refs.error(
                        f"{where}.metric",
                        f"{gate.metric}: the study tests energies and forces and gives no property metric "
                        "(study a property with `property: <name>`)",
                    )
                if isinstance(gate.at, int):
                    sizes = study.learning_curve.sizes if study.learning_curve else []
                    if gate.at not in sizes:
                        raise refs.error(
                            f"{where}.at",
                            f"no learning-curve size {gate.at} (sizes: {known(map(str, sizes))})",
                        )
                elif not study.zero_shot:
                    raise refs.error(f"{where}.at", f"{gate.at!r} needs zero_shot: true")
        refs.unique_slugs("transfer", self.yaml_path(), names)

    def _check_property_study(self, study: TransferSpec, base: str, refs: References) -> None:
        if study.zero_shot:
            raise refs.error(
                f"{base}.zero_shot",
                f"a property study has no zero-shot result: {known(study.models)} predict energies, not "
                f"{study.property} (leave zero_shot out)",
            )
        lc = study.learning_curve
        if lc is None:
            raise refs.error(
                f"{base}.learning_curve",
                f"required for a property study: {study.property} is learned by fine-tuning (and from "
                "scratch) on N train frames",
            )
        problem = energy_loss_problem(lc.training, study.property or "")
        if problem is not None:
            raise refs.error(f"{base}.learning_curve.training.loss", problem)

    def guard(self, section: list[TransferSpec], refs: References) -> None:
        data = refs.data
        assert data is not None
        for i, study in enumerate(section):
            base = self.yaml_path(i)
            for k, gate in enumerate(study.gates):
                test = f"{gate.dataset}@test"
                problem = metric_problem(gate.metric, gate.max, data.labels(test), test)
                if problem is not None:
                    field = "max" if "capped" in problem else "metric"
                    raise refs.error(f"{base}.gates[{k}].{field}", problem)
            for j, name in enumerate(study.datasets):
                train, test = f"{name}@train", f"{name}@test"
                for ref in study.models:
                    refs.need_elements(f"{base}.datasets[{j}]", ref, name)
                    if study.zero_shot:
                        refs.flag_unlearned(f"{base}.datasets[{j}]", ref, test)
                    shared = refs.training_overlap(ref, test)
                    if shared is not None:
                        advice = "a transfer study needs data the model has not seen"
                        raise refs.overlap_error(
                            f"{base}.datasets[{j}]", "test part", test, shared, ref, advice
                        )
                if study.zero_shot:
                    undetermined = undetermined_elements(data.compositions(train), data.compositions(test))
                    if undetermined:
                        raise refs.error(
                            f"{base}.datasets[{j}]",
                            f"the compositions of {train!r} do not determine the energy bias of "
                            f"{', '.join(undetermined)} in {test!r}: the zero-shot re-fit would be arbitrary",
                        )
                lc = study.learning_curve
                available = data.infos[train].nframes if lc else 0
                for k, size in enumerate(lc.sizes if lc else ()):
                    if size > available:
                        raise refs.error(
                            f"{base}.learning_curve.sizes[{k}]",
                            f"{size} frames asked for; the train part of {name!r} has {available}",
                        )

    def plan(self, section: list[TransferSpec], ctx: PlanContext) -> None:
        for i, study in enumerate(section):
            base = self.yaml_path(i)
            for name in study.datasets:
                train = ctx.part(name, "train")
                loss = self._loss(study, train, ctx, f"{base}.learning_curve")
                target, _ = ctx.declared_property(study.property, name)
                for k, ref in enumerate(study.models):
                    prefix = f"transfer-{slug(study.name)}-{model_slug(ref)}-{slug(name)}"
                    where = f"{base}.models[{k}]"
                    if study.zero_shot:
                        self._zero_shot(study, ref, name, prefix, ctx, where)
                    if study.learning_curve is not None:
                        source, branch = ctx.finetune_source(ref)
                        if target is not None:  # a new property fitting net on the model's descriptor
                            branch = RANDOM_BRANCH
                        for size, repeat, training in self._curve(study):
                            subset = subset_name(name, size, repeat)
                            deepmd_input = single_task_input(
                                ctx.model,
                                ctx.type_map,
                                training,
                                with_validation=False,
                                descriptor={},
                                fitting_net=self._fitting(target, ctx, training.seed),
                            )
                            deepmd_input["loss"] = dict(loss)
                            tuned = ctx.add(
                                StepPlan(
                                    key=f"{prefix}-n{size}-r{repeat}",
                                    op=FinetuneOP,
                                    resource="finetune",
                                    artifacts={
                                        "datasets": DatasetBundle((subset,)),
                                        "base_checkpoint": source,
                                    },
                                    summary=f"dp train --finetune {ref}"
                                    + (f" (new {study.property} fitting net)" if target else "")
                                    + f" on {size} frames of {train} (repeat {repeat}), {training.steps} "
                                    "steps; dp freeze",
                                    params=FinetuneParams(
                                        deepmd_input=deepmd_input,
                                        head_datasets={slug(name): HeadData(train=[subset])},
                                        dataset_formats=ctx.formats([subset]),
                                        model_branch=branch,
                                    ),
                                ),
                                where,
                            )
                            self._test(
                                study,
                                ref,
                                name,
                                f"{prefix}-n{size}-r{repeat}-test",
                                tuned.output("model"),
                                ctx,
                                where,
                                protocol="finetune",
                                size=size,
                                repeat=repeat,
                            )
                lc = study.learning_curve
                if lc is None or not lc.scratch:
                    continue
                for size, repeat, training in self._curve(study):
                    subset = subset_name(name, size, repeat)
                    deepmd_input = single_task_input(ctx.model, ctx.type_map, training, with_validation=False)
                    if target is not None:
                        deepmd_input["model"]["fitting_net"] = self._fitting(target, ctx, training.seed)
                    deepmd_input["loss"] = dict(loss)
                    key = f"transfer-{slug(study.name)}-{SCRATCH}-{slug(name)}-n{size}-r{repeat}"
                    scratch = ctx.add(
                        StepPlan(
                            key=key,
                            op=ScratchOP,
                            resource="finetune",
                            artifacts={"datasets": DatasetBundle((subset,))},
                            summary=f"dp train from scratch ({ctx.model.preset or 'spec model'}"
                            + (f", {study.property} fitting net" if target else "")
                            + f") on {size} frames of {train} (repeat {repeat}), {training.steps} steps; "
                            "dp freeze",
                            params=ScratchParams(
                                deepmd_input=deepmd_input,
                                head_datasets={slug(name): HeadData(train=[subset])},
                                dataset_formats=ctx.formats([subset]),
                            ),
                        ),
                        f"{base}.learning_curve.scratch",
                    )
                    self._test(
                        study,
                        SCRATCH,
                        name,
                        f"{key}-test",
                        scratch.output("model"),
                        ctx,
                        f"{base}.learning_curve.scratch",
                        protocol=SCRATCH,
                        size=size,
                        repeat=repeat,
                    )

    @staticmethod
    def _curve(study: TransferSpec) -> Iterator[tuple[int, int, Any]]:
        """(size, repeat, training settings) of each learning-curve point; repeat k: seed + k - 1."""
        lc = study.learning_curve
        assert lc is not None
        for size in lc.sizes:
            for repeat in range(1, lc.repeats + 1):
                yield size, repeat, lc.training.model_copy(update={"seed": lc.training.seed + repeat - 1})

    @staticmethod
    def _fitting(target: PropertyTarget | None, ctx: PlanContext, seed: int) -> dict[str, Any]:
        """The fine-tune's fitting net: none for energies (the checkpoint's), else a property one."""
        if target is None:
            return {}
        return property_fitting(ctx.model, target, seed)

    @staticmethod
    def _loss(study: TransferSpec, train: str, ctx: PlanContext, where: str) -> dict[str, Any]:
        """The learning curve's loss on ``train``: virials fitted where every system has them (a notice)."""
        lc = study.learning_curve
        if lc is None:
            return {}
        if study.property is not None:
            return dict(PROPERTY_LOSS)
        loss = loss_section(ctx.model, lc.training)
        ctx.fit_virials(loss, lc.training.loss, [train], where)
        return loss

    def _zero_shot(
        self, study: TransferSpec, ref: str, name: str, prefix: str, ctx: PlanContext, where: str
    ) -> None:
        self._test(study, ref, name, f"{prefix}-unshifted", ctx.models[ref], ctx, where, protocol="unshifted")
        bias = change_bias_step(ctx, ref, name, where)
        self._test(
            study, ref, name, f"{prefix}-zero-shot", bias.output("model"), ctx, where, protocol="zero-shot"
        )

    @staticmethod
    def _test(
        study: TransferSpec,
        ref: str,
        name: str,
        key: str,
        model: ArtifactSource,
        ctx: PlanContext,
        where: str,
        *,
        protocol: str,
        size: int | None = None,
        repeat: int | None = None,
    ) -> None:
        test, train = ctx.part(name, "test"), ctx.part(name, "train")
        target, components = ctx.declared_property(study.property, name)
        what = {
            "unshifted": "as it is",
            "zero-shot": "bias changed",
            "finetune": f"fine-tuned on {size}",
            SCRATCH: f"from scratch on {size}",
        }[protocol]
        ctx.add(
            StepPlan(
                key=key,
                op=TestOP,
                summary=f"dp test {ref} ({what}) on {test}",
                params=TestParams(
                    dataset=test,
                    frames=study.frames,
                    baseline_dataset=train,
                    dataset_formats=ctx.formats((test, train)),
                    property=target,
                ),
                artifacts={"model": model, "datasets": DatasetBundle((test, train))},
                evaluation=Evaluation(
                    ref,
                    test,
                    name if protocol == "zero-shot" else None,
                    study=study.name,
                    protocol=protocol,
                    train_frames=size,
                    repeat=repeat,
                    unlearned=ctx.unlearned.get((ref, test), ()) if size is None else (),
                    property=study.property,
                    components=components,
                ),
                short=True,
            ),
            where,
        )


STAGE = TransferStage()
