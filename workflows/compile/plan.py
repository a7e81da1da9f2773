"""Spec -> Plan: the DAG of steps with stable, human-readable keys. Pure: no I/O, no dflow.

Keys: ``pretrain``, ``freeze-<head>``, ``finetune-<name>``, ``change-bias-<model>-on-<dataset>``,
``test-<model>-on-<dataset>[-refit-<dataset>]`` where ``<model>`` is ``pretrain-<head>`` or
``finetune-<name>``. A key names the same computation in every run of the same spec, so runs can be
resumed and compared step by step.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from lamflow.ops.dp import RANDOM_BRANCH
from lamflow.workflows.compile.deepmd_input import multitask_input, single_task_input
from lamflow.workflows.spec.base import slug
from lamflow.workflows.spec.finetune import RANDOM_HEAD
from lamflow.workflows.spec.loader import ResolvedSpec


@dataclass(frozen=True)
class StepOutput:
    """An output artifact of another step."""

    step: str
    name: str


@dataclass(frozen=True)
class LocalFile:
    """A file given by the user (e.g. an external checkpoint), staged by the engine."""

    path: Path


@dataclass(frozen=True)
class StepPlan:
    key: str
    op: str  # pretrain | freeze | finetune | change-bias | test
    summary: str  # one line for humans
    parameters: dict[str, Any]
    datasets: tuple[str, ...] = ()  # staged into the step's `datasets` artifact
    artifacts: dict[str, StepOutput | LocalFile] = field(default_factory=dict)
    model_ref: str | None = None  # the spec's name for the frozen model this step outputs (`model`)

    @property
    def depends(self) -> list[str]:
        return sorted({a.step for a in self.artifacts.values() if isinstance(a, StepOutput)})


@dataclass(frozen=True)
class TestCase:
    __test__ = False  # not a pytest class

    key: str
    model: str  # spec reference, e.g. pretrain.water
    dataset: str
    refit_bias_on: str | None


@dataclass(frozen=True)
class Plan:
    name: str
    steps: tuple[StepPlan, ...]  # dependencies come first
    dataset_paths: dict[str, Path]
    tests: tuple[TestCase, ...]

    def step(self, key: str) -> StepPlan:
        return next(s for s in self.steps if s.key == key)


def model_slug(ref: str) -> str:
    stage, _, name = ref.partition(".")
    return f"{stage}-{slug(name)}"


def build_plan(resolved: ResolvedSpec) -> Plan:
    spec = resolved.spec
    stages = spec.stages
    formats = {
        name: {"format": ds.format, "type_map": resolved.dataset_type_maps[name]}
        for name, ds in spec.datasets.items()
    }
    steps: list[StepPlan] = []
    model_outputs: dict[str, StepOutput] = {}  # spec model ref -> frozen model

    def formats_for(names: tuple[str, ...]) -> dict[str, dict[str, Any]]:
        return {n: formats[n] for n in names}

    pretrain = stages.pretrain
    multitask = pretrain is not None and len(pretrain.heads) > 1
    if pretrain is not None:
        heads = pretrain.heads
        head_datasets = {
            h: {"train": list(hs.datasets), "validation": list(hs.validation)} for h, hs in heads.items()
        }
        names = tuple(
            dict.fromkeys(n for hs in head_datasets.values() for n in hs["train"] + hs["validation"])
        )
        if multitask:
            deepmd_input = multitask_input(
                spec.model,
                resolved.type_map,
                pretrain.training,
                {h: (hs.weight, bool(hs.validation), hs.fitting_net) for h, hs in heads.items()},
            )
            summary = f"dp train, multi-task ({', '.join(heads)}), {pretrain.training.steps} steps"
        else:
            ((head, hs),) = heads.items()
            deepmd_input = single_task_input(
                spec.model, resolved.type_map, pretrain.training, with_validation=bool(hs.validation)
            )
            deepmd_input["model"]["fitting_net"].update(hs.fitting_net)
            summary = f"dp train, single task ({head}), {pretrain.training.steps} steps"
        steps.append(
            StepPlan(
                key="pretrain",
                op="pretrain",
                summary=summary,
                datasets=names,
                parameters={
                    "deepmd_input": deepmd_input,
                    "head_datasets": head_datasets,
                    "dataset_formats": formats_for(names),
                },
            )
        )
        for head in heads:
            key = f"freeze-{slug(head)}"
            steps.append(
                StepPlan(
                    key=key,
                    op="freeze",
                    summary=f"dp freeze --head {head}" if multitask else "dp freeze",
                    parameters={"head": head if multitask else ""},
                    artifacts={"checkpoint": StepOutput("pretrain", "checkpoint")},
                    model_ref=f"pretrain.{head}",
                )
            )
            model_outputs[f"pretrain.{head}"] = StepOutput(key, "model")

    for ft in stages.finetune:
        key = f"finetune-{slug(ft.name)}"
        from_head = ft.from_.head
        artifacts: dict[str, StepOutput | LocalFile]
        if ft.from_.model_file is not None:
            artifacts = {"base_checkpoint": LocalFile(resolved.model_files[ft.name])}
            branch = RANDOM_BRANCH if from_head == RANDOM_HEAD else (from_head or "")
            origin = ft.from_.model_file.name
        else:
            artifacts = {"base_checkpoint": StepOutput("pretrain", "checkpoint")}
            if from_head == RANDOM_HEAD:
                branch = RANDOM_BRANCH
            else:
                branch = (from_head or "") if multitask else ""
            origin = (
                f"pretrain head {from_head}"
                if from_head and from_head != RANDOM_HEAD
                else "pretrain, random fitting net"
            )
        names = tuple(dict.fromkeys([*ft.datasets, *ft.validation]))
        deepmd_input = single_task_input(
            spec.model,
            resolved.type_map,
            ft.training,
            with_validation=bool(ft.validation),
            descriptor={},
            fitting_net={},
        )
        steps.append(
            StepPlan(
                key=key,
                op="finetune",
                model_ref=f"finetune.{ft.name}",
                datasets=names,
                artifacts=artifacts,
                summary=f"dp train --finetune ({origin}) on {', '.join(ft.datasets)}, "
                f"{ft.training.steps} steps; "
                "dp freeze",
                parameters={
                    "deepmd_input": deepmd_input,
                    "head_datasets": {
                        ft.name: {"train": list(ft.datasets), "validation": list(ft.validation)}
                    },
                    "dataset_formats": formats_for(names),
                    "model_branch": branch,
                },
            )
        )
        model_outputs[f"finetune.{ft.name}"] = StepOutput(key, "model")

    tests: list[TestCase] = []
    seen: set[str] = set()
    for group in stages.test:
        for ref in group.models:
            model = model_outputs[ref]
            if group.refit_bias_on is not None:
                bias_key = f"change-bias-{model_slug(ref)}-on-{slug(group.refit_bias_on)}"
                if bias_key not in seen:
                    seen.add(bias_key)
                    steps.append(
                        StepPlan(
                            key=bias_key,
                            op="change-bias",
                            datasets=(group.refit_bias_on,),
                            summary=f"dp change-bias {ref} -s {group.refit_bias_on} -m change",
                            parameters={
                                "dataset": group.refit_bias_on,
                                "mode": "change",
                                "dataset_formats": formats_for((group.refit_bias_on,)),
                            },
                            artifacts={"model": model},
                        )
                    )
                model = StepOutput(bias_key, "model")
            for dataset in group.datasets:
                key = f"test-{model_slug(ref)}-on-{slug(dataset)}"
                if group.refit_bias_on is not None:
                    key += f"-refit-{slug(group.refit_bias_on)}"
                if key in seen:
                    continue
                seen.add(key)
                steps.append(
                    StepPlan(
                        key=key,
                        op="test",
                        datasets=(dataset,),
                        artifacts={"model": model},
                        summary=f"dp test {ref}"
                        + (" (bias re-fitted)" if group.refit_bias_on else "")
                        + f" on {dataset}",
                        parameters={
                            "dataset": dataset,
                            "frames": group.frames,
                            "dataset_formats": formats_for((dataset,)),
                        },
                    )
                )
                tests.append(TestCase(key, ref, dataset, group.refit_bias_on))

    return Plan(
        name=slug(spec.name),
        steps=tuple(steps),
        dataset_paths=dict(resolved.dataset_paths),
        tests=tuple(tests),
    )
