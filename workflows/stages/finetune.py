"""Stage ``finetune``: ``dp train --finetune`` from a pretrain head, a random fitting net or a given
checkpoint, then ``dp freeze`` — one step per entry. Provides the model references ``finetune.<name>``."""

from __future__ import annotations

from pathlib import Path

from lamflow.ops.dp import RANDOM_BRANCH
from lamflow.ops.finetune import FinetuneOP, FinetuneParams
from lamflow.ops.training.checkpoint import CheckpointError, read_checkpoint
from lamflow.ops.training.common import HeadData
from lamflow.workflows.compile.deepmd_input import PROPERTY_LOSS, property_fitting, single_task_input
from lamflow.workflows.compile.plan import ArtifactSource, DatasetBundle, LocalFile, StepPlan
from lamflow.workflows.spec.base import slug
from lamflow.workflows.spec.finetune import RANDOM_HEAD, FinetuneSpec
from lamflow.workflows.stages._guards import energy_loss_problem
from lamflow.workflows.stages.base import (
    CHECKPOINT_REF,
    ENERGY,
    PlanContext,
    References,
    Stage,
    known,
    pretrain_heads,
)


def check_external_checkpoint(refs: References, base: str, path: Path, head: str | None) -> None:
    """The file is a DeePMD-kit training checkpoint, and ``from.head`` fits its heads."""
    try:
        info = read_checkpoint(path)
    except CheckpointError as exc:
        raise refs.error(f"{base}.from.model_file", str(exc)) from None
    if head == RANDOM_HEAD:
        return
    if info.multitask and head is None:
        raise refs.error(
            f"{base}.from.head",
            f"required: {path.name} is multi-task (heads: {known(info.heads)} or '{RANDOM_HEAD}')",
        )
    if info.multitask and head not in info.heads:
        raise refs.error(
            f"{base}.from.head", f"{path.name} has no head {head!r} (heads: {known(info.heads)})"
        )
    if not info.multitask and head is not None:
        raise refs.error(
            f"{base}.from.head",
            f"{path.name} is a single-task checkpoint: omit from.head or use '{RANDOM_HEAD}'",
        )


def _fitting_source(ft: FinetuneSpec, heads: list[str]) -> str | None:
    """The model of the spec whose fitting the fine-tune continues: its ``from.model``, or the pretrain head
    it starts from; None for a new fitting net (random head) or a checkpoint from outside the spec."""
    src = ft.from_
    if ft.property is not None:
        return None  # a new property fitting net: it continues no model's fitting
    if src.model is not None:
        return src.model
    if src.model_file is None and src.head != RANDOM_HEAD and heads:
        return f"pretrain.{src.head or heads[0]}"
    return None


class FinetuneStage(Stage[list[FinetuneSpec]]):
    key = "finetune"
    order = 20

    def check(self, section: list[FinetuneSpec], refs: References) -> None:
        heads = pretrain_heads(refs.models)
        names: dict[str, int] = {}
        for i, ft in enumerate(section):
            base = self.yaml_path(i)
            refs.claim_name(self.key, names, ft.name, i)
            src = ft.from_
            if ft.property is not None:
                self._check_property(ft, base, refs, heads)
            if src.model is not None:
                self._check_from_model(ft, base, refs)
            elif src.model_file is None:
                if not heads:
                    raise refs.error(
                        f"{base}.from",
                        "no pretrain stage to start from: add stages.pretrain or give from.model_file",
                    )
                if src.head is None:
                    if len(heads) > 1 and ft.property is None:
                        raise refs.error(
                            f"{base}.from.head",
                            f"required for a multi-task pretrain: one of {known(heads)} or '{RANDOM_HEAD}'",
                        )
                elif src.head != RANDOM_HEAD and src.head not in heads:
                    raise refs.error(
                        f"{base}.from.head",
                        f"no pretrain head {src.head!r} (heads: {known(heads)}, or '{RANDOM_HEAD}')",
                    )
            elif src.model_file.suffix != ".pt":
                raise refs.error(
                    f"{base}.from.model_file",
                    f"{src.model_file}: fine-tuning needs a DeePMD-kit training checkpoint (.pt); "
                    "frozen .pth models cannot be fine-tuned",
                )
            elif not refs.resolve_file(src.model_file).is_file():
                raise refs.error(
                    f"{base}.from.model_file", f"{refs.resolve_file(src.model_file)}: no such file"
                )
            else:
                check_external_checkpoint(refs, base, refs.resolve_file(src.model_file), src.head)
            labels = ft.property or ENERGY
            for j, name in enumerate(ft.datasets):
                refs.need_dataset(f"{base}.datasets[{j}]", name, labels)
            for j, name in enumerate(ft.validation):
                refs.need_dataset(f"{base}.validation[{j}]", name, labels)
            spec_model = src.model_file is None and src.model is None
            descriptor = refs.spec_descriptor() if spec_model else None  # else: the checkpoint's
            refs.provide_model(base, f"finetune.{ft.name}", descriptor)
            if ft.property is not None:
                refs.predicts[f"finetune.{ft.name}"] = ft.property
            trained = {refs.part(n, "train"): f"{base}.datasets[{j}]" for j, n in enumerate(ft.datasets)}
            if src.model is not None:  # also trained on what its source saw
                trained = {**refs.trained_on.get(src.model, {}), **trained}
            elif src.model_file is None:  # also trained on what the pretraining saw
                for ref in (r for r in refs.trained_on if r.startswith("pretrain.")):
                    trained = {**refs.trained_on[ref], **trained}
            refs.trained_on[f"finetune.{ft.name}"] = trained
            own = {refs.part(n, "train"): f"{base}.datasets[{j}]" for j, n in enumerate(ft.datasets)}
            source = _fitting_source(ft, heads)
            if source is not None and source in refs.learned_from:
                refs.learned_from[f"finetune.{ft.name}"] = {**refs.learned_from[source], **own}
            elif src.model_file is None and src.model is None:
                refs.learned_from[f"finetune.{ft.name}"] = own
        refs.unique_slugs("finetune", self.yaml_path(), names)

    @staticmethod
    def _check_property(ft: FinetuneSpec, base: str, refs: References, heads: list[str]) -> None:
        """A property fine-tune takes the source's descriptor (shared by every head) and a new fitting net:
        a head other than 'random' would mean nothing, and energy-loss prefactors do not apply."""
        src = ft.from_
        if src.head not in (None, RANDOM_HEAD) and (src.model_file is not None or src.head in heads):
            raise refs.error(
                f"{base}.from.head",
                f"a property fine-tune starts from the descriptor, which every head shares, with a new "
                f"{ft.property} fitting net: omit from.head",
            )
        declared: dict[tuple[int, bool], str] = {}
        for where, names in (("datasets", ft.datasets), ("validation", ft.validation)):
            for j, name in enumerate(names):
                prop = getattr(refs.datasets.get(name), "properties", {}).get(ft.property)
                if prop is None:
                    continue  # guard_labels names it
                declared.setdefault((prop.dim, prop.intensive), f"{base}.{where}[{j}]")
        if len(declared) > 1:
            (first, a), (second, b) = list(declared.items())[:2]
            raise refs.error(
                b,
                f"declares {ft.property} with dim {second[0]}, intensive {second[1]}; {a} with dim "
                f"{first[0]}, intensive {first[1]}: one fitting net cannot fit both",
            )
        problem = energy_loss_problem(ft.training, ft.property or "")
        if problem is not None:
            raise refs.error(f"{base}.training.loss", problem)

    def _check_from_model(self, ft: FinetuneSpec, base: str, refs: References) -> None:
        src = ft.from_
        assert src.model is not None
        if src.model_file is not None:
            raise refs.error(f"{base}.from", "give model or model_file, not both")
        if src.head is not None and src.head != RANDOM_HEAD:
            raise refs.error(
                f"{base}.from.head",
                f"the head of {src.model} is set where it is declared; here only '{RANDOM_HEAD}' is allowed",
            )
        refs.need_model(f"{base}.from.model", src.model, any_kind=ft.property is not None)
        if not refs.has_checkpoint(src.model):
            raise refs.error(
                f"{base}.from.model",
                f"{src.model} has no training checkpoint to fine-tune from (a frozen .pth cannot be "
                "fine-tuned; declare the .pt checkpoint under models:)",
            )

    def guard(self, section: list[FinetuneSpec], refs: References) -> None:
        heads = pretrain_heads(refs.models)
        for i, ft in enumerate(section):
            src = ft.from_
            if refs.data is not None:
                descriptor = refs.descriptors.get(f"finetune.{ft.name}")
                refs.notice_sel(self.yaml_path(i), descriptor, [refs.part(n, "train") for n in ft.datasets])
            for j, name in enumerate(ft.datasets if src.model is not None else ()):
                added = refs.missing_elements(src.model or "", name)
                if added:  # as DeePMD-kit does with --finetune: the new elements start untrained
                    refs.notices.append(
                        f"{self.yaml_path(i)}.datasets[{j}]: {src.model} knows only "
                        f"{', '.join(refs.type_maps[src.model or ''])}; the fine-tune adds "
                        f"{', '.join(added)}, which DeePMD-kit starts from random parameters (and warns so)"
                    )
            source = _fitting_source(ft, heads)
            if source is None:
                continue
            learned = refs.learned_elements(source)
            if learned is None or refs.data is None:
                continue
            new = sorted(
                {e for n in ft.datasets for e in refs.data.elements(refs.part(n, "train"))} - learned
            )
            if new:
                refs.notices.append(
                    f"{self.yaml_path(i)}.datasets: {source} never learned {', '.join(new)} (its training "
                    f"data {known(sorted(refs.learned_from[source]))} hold none): the fine-tune learns them "
                    "from its own data alone, starting from untrained weights for them"
                )

    def plan(self, section: list[FinetuneSpec], ctx: PlanContext) -> None:
        for i, ft in enumerate(section):
            src, from_head = ft.from_, ft.from_.head
            base_checkpoint: ArtifactSource
            if src.model_file is not None:
                base_checkpoint, branch = LocalFile(ctx.resolve_file(src.model_file)), from_head or ""
                origin = src.model_file.name
            elif src.model is not None or from_head not in (None, RANDOM_HEAD):
                base_checkpoint, branch = ctx.finetune_source(src.model or f"pretrain.{from_head}")
                origin = src.model or f"pretrain head {from_head}"
            else:
                base_checkpoint, branch = ctx.checkpoints[CHECKPOINT_REF], ""
                origin = "pretrain, random fitting net"
            if from_head == RANDOM_HEAD or ft.property is not None:
                branch = RANDOM_BRANCH
            if ft.property is not None and src.model_file is None and src.model is None:
                base_checkpoint, origin = ctx.checkpoints[CHECKPOINT_REF], "pretrain's descriptor"
            train = [ctx.part(n, "train") for n in ft.datasets]
            validation = [ctx.part(n, "test") for n in ft.validation]
            names = tuple(dict.fromkeys([*train, *validation]))
            fitting: dict = {}
            target, _ = ctx.declared_property(ft.property, ft.datasets[0])
            if target is not None:
                fitting = property_fitting(ctx.model, target, ft.training.seed)
                ctx.predicts[f"finetune.{ft.name}"] = target.name
            deepmd_input = single_task_input(
                ctx.model,
                ctx.type_map,
                ft.training,
                with_validation=bool(ft.validation),
                descriptor={},
                fitting_net=fitting,
            )
            if ft.property is not None:
                deepmd_input["loss"] = dict(PROPERTY_LOSS)
            else:
                ctx.fit_virials(deepmd_input["loss"], ft.training.loss, train, self.yaml_path(i))
            step = ctx.add(
                StepPlan(
                    key=f"finetune-{slug(ft.name)}",
                    op=FinetuneOP,
                    resource="finetune",
                    model_ref=f"finetune.{ft.name}",
                    checkpoint_ref=f"finetune.{ft.name}",
                    artifacts={"datasets": DatasetBundle(names), "base_checkpoint": base_checkpoint},
                    summary=f"dp train --finetune ({origin}"
                    + (f", new {ft.property} fitting net" if ft.property else "")
                    + f") on {', '.join(ft.datasets)}, "
                    f"{ft.training.steps} steps; dp freeze",
                    params=FinetuneParams(
                        deepmd_input=deepmd_input,
                        head_datasets={ft.name: HeadData(train=train, validation=validation)},
                        dataset_formats=ctx.formats(names),
                        model_branch=branch,
                    ),
                ),
                self.yaml_path(i),
            )
            ctx.models[f"finetune.{ft.name}"] = step.output("model")
            ctx.checkpoints[f"finetune.{ft.name}"] = step.output("checkpoint")


STAGE = FinetuneStage()
