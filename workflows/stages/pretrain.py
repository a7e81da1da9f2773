"""Stage ``pretrain``: one ``dp train`` (multi-task with >= 2 heads), then one ``freeze`` step per head.

Provides the model references ``pretrain.<head>`` (frozen heads) and the checkpoint ``pretrain``.
"""

from __future__ import annotations

from lamflow.ops.freeze import FreezeOP, FreezeParams
from lamflow.ops.pretrain import PretrainOP, PretrainParams
from lamflow.ops.training.common import HeadData
from lamflow.workflows.compile.deepmd_input import deep_merge, multitask_input, single_task_input
from lamflow.workflows.compile.plan import DatasetBundle, StepPlan
from lamflow.workflows.spec.base import slug
from lamflow.workflows.spec.finetune import RANDOM_HEAD
from lamflow.workflows.spec.pretrain import PretrainSpec
from lamflow.workflows.stages.base import CHECKPOINT_REF, PlanContext, References, Stage


class PretrainStage(Stage[PretrainSpec | None]):
    key = "pretrain"
    order = 10

    def check(self, section: PretrainSpec | None, refs: References) -> None:
        if section is None:
            return
        refs.unique_slugs("head", self.yaml_path("heads"), section.heads)
        for head, head_spec in section.heads.items():
            if head.lower() == RANDOM_HEAD:
                raise refs.error(
                    self.yaml_path("heads", head),
                    f"{head!r} is reserved by DeePMD-kit for a random fitting net",
                )
            for i, name in enumerate(head_spec.datasets):
                refs.need_dataset(f"{self.yaml_path('heads', head, 'datasets')}[{i}]", name)
            for i, name in enumerate(head_spec.validation):
                refs.need_dataset(f"{self.yaml_path('heads', head, 'validation')}[{i}]", name)
            refs.provide_model(self.yaml_path("heads", head), f"pretrain.{head}", refs.spec_descriptor())
        # the shared descriptor saw every head's data: each head was trained on all of it
        seen = {refs.part(n, "train"): f"{self.yaml_path('heads', h, 'datasets')}[{i}]"
                for h, hs in section.heads.items() for i, n in enumerate(hs.datasets)}  # fmt: skip
        for head, head_spec in section.heads.items():
            refs.trained_on[f"pretrain.{head}"] = dict(seen)
            where = self.yaml_path("heads", head, "datasets")
            refs.learned_from[f"pretrain.{head}"] = {
                refs.part(n, "train"): f"{where}[{i}]" for i, n in enumerate(head_spec.datasets)
            }  # a head's fitting saw only its own data

    def guard(self, section: PretrainSpec | None, refs: References) -> None:
        if section is None or refs.data is None:
            return
        names = list(
            dict.fromkeys(refs.part(n, "train") for hs in section.heads.values() for n in hs.datasets)
        )
        refs.notice_sel(self.yaml_path(), refs.spec_descriptor(), names)

    def plan(self, section: PretrainSpec | None, ctx: PlanContext) -> None:
        if section is None:
            return
        heads = section.heads
        multitask = len(heads) > 1
        head_datasets = {
            h: HeadData(
                train=[ctx.part(n, "train") for n in hs.datasets],
                validation=[ctx.part(n, "test") for n in hs.validation],
            )
            for h, hs in heads.items()
        }
        names = tuple(dict.fromkeys(n for hd in head_datasets.values() for n in hd.train + hd.validation))
        if multitask:
            deepmd_input = multitask_input(
                ctx.model,
                ctx.type_map,
                section.training,
                {h: (hs.weight, bool(hs.validation), hs.fitting_net) for h, hs in heads.items()},
            )
            summary = f"dp train, multi-task ({', '.join(heads)}), {section.training.steps} steps"
        else:
            ((head, hs),) = heads.items()
            deepmd_input = single_task_input(
                ctx.model, ctx.type_map, section.training, with_validation=bool(hs.validation)
            )
            deepmd_input["model"]["fitting_net"] = deep_merge(
                deepmd_input["model"]["fitting_net"], hs.fitting_net
            )
            summary = f"dp train, single task ({head}), {section.training.steps} steps"
        for head in heads:
            loss = deepmd_input["loss_dict"][head] if multitask else deepmd_input["loss"]
            where = self.yaml_path("heads", head) if multitask else self.yaml_path()
            ctx.fit_virials(loss, section.training.loss, head_datasets[head].train, where)
        train = ctx.add(
            StepPlan(
                key="pretrain",
                op=PretrainOP,
                resource="pretrain",
                checkpoint_ref=CHECKPOINT_REF,
                summary=summary,
                params=PretrainParams(
                    deepmd_input=deepmd_input, head_datasets=head_datasets, dataset_formats=ctx.formats(names)
                ),
                artifacts={"datasets": DatasetBundle(names)},
            ),
            self.yaml_path(),
        )
        ctx.checkpoints[CHECKPOINT_REF] = train.output("checkpoint")
        for head in heads:
            freeze = ctx.add(
                StepPlan(
                    key=f"freeze-{slug(head)}",
                    op=FreezeOP,
                    summary=f"dp freeze --head {head}" if multitask else "dp freeze",
                    params=FreezeParams(head=head if multitask else ""),
                    artifacts={"checkpoint": train.output("checkpoint")},
                    model_ref=f"pretrain.{head}",
                    short=True,
                ),
                self.yaml_path("heads", head),
            )
            ctx.models[f"pretrain.{head}"] = freeze.output("model")


STAGE = PretrainStage()
