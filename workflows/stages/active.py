"""Stage ``active``: concurrent learning, as dpgen2 runs it — a loop decided at run time. Each iteration
trains an ensemble (K fine-tunes from the same checkpoint, or with ``student:`` K students from scratch,
seeds differing) on the labelled data so far, explores with MD driven by its first model, computes the
ensemble's model deviation on every dumped frame, selects between the trust levels, labels the picks (DFT
or a teacher), merges them into the labelled data, tests the first model on held-out data and decides
whether to stop. Provides the model reference ``active.<name>``
(the last iteration's first model) once the loop stopped.

Step keys: ``active-<name>-i<nnn>-`` followed by ``train-<k>``, ``explore-s<i>-<T>k``, ``collect``
(``collect-<level>-<j>`` above 8 branches), ``model-devi``, ``select``, ``label`` (``label-1`` ...
``label-N`` with ``label.parallel: N``, each a share of the picks), ``merge``, ``test`` (with a held-out
dataset) and ``converge``; with the random baseline also ``label-random``, ``merge-random``,
``train-random`` and ``test-random``.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from lamflow.ops.converge import ConvergeOP, ConvergeParams
from lamflow.ops.data.datasets import SystemInfo
from lamflow.ops.dp import RANDOM_BRANCH
from lamflow.ops.explore import Perturbation, StartStructure
from lamflow.ops.explore_loop import LoopExploreOP, LoopExploreParams
from lamflow.ops.finetune import FinetuneOP, FinetuneParams
from lamflow.ops.label_dft import CommandParams, LabelDftOP, LabelDftParams, PyscfParams
from lamflow.ops.merge_labels import MergeLabelsOP, MergeLabelsParams
from lamflow.ops.model_devi import ModelDeviOP, ModelDeviParams
from lamflow.ops.scratch import ScratchOP, ScratchParams
from lamflow.ops.select_frames import SelectFramesOP, SelectFramesParams
from lamflow.ops.test import TestOP, TestParams
from lamflow.ops.training.common import HeadData
from lamflow.workflows.compile.deepmd_input import architecture, single_task_input
from lamflow.workflows.compile.plan import (
    ArtifactSource,
    Carried,
    CarriedArtifact,
    DatasetBundle,
    IterationOutput,
    LocalFile,
    LoopOutput,
    LoopPlan,
    StepPlan,
)
from lamflow.workflows.spec.active import ActiveSpec
from lamflow.workflows.spec.base import slug
from lamflow.workflows.spec.finetune import RANDOM_HEAD
from lamflow.workflows.stages._guards import closest_start
from lamflow.workflows.stages.base import CHECKPOINT_REF, ENERGY, PlanContext, References, Stage, known
from lamflow.workflows.stages.distill import (
    collect_tree,
    guard_teacher,
    md_settings,
    start_frames,
    temperature_key,
)
from lamflow.workflows.stages.finetune import check_external_checkpoint

LABELLED, RANDOM_LABELLED = "labelled", "random_labelled"  # what the loop carries
MIN_DISTANCE = 0.5  # Å: closer atoms in an MD frame mean it blew up (as the distill stage's default)


class ActiveStage(Stage[list[ActiveSpec]]):
    key = "active"
    order = 25

    def check(self, section: list[ActiveSpec], refs: References) -> None:
        names: dict[str, int] = {}
        for i, a in enumerate(section):
            base = self.yaml_path(i)
            refs.claim_name(self.key, names, a.name, i)
            if a.student is None:
                self._check_from(a, base, refs)
            datasets: list[tuple[str, str, str | None]] = [
                (f"{base}.datasets[{j}]", n, ENERGY) for j, n in enumerate(a.datasets)
            ]
            datasets += [
                (f"{base}.explore.datasets[{j}]", n, None) for j, n in enumerate(a.explore.datasets)
            ]  # start structures: no labels read
            datasets += [(f"{base}.test", a.test, ENERGY)] if a.test is not None else []
            for where, name, labels in datasets:
                refs.need_dataset(where, name, labels)
                if refs.datasets[name].converted:
                    raise refs.error(
                        where,
                        f"{name!r} is {refs.datasets[name].format}: the active stage reads stored datasets; "
                        "convert it first with `lamflow data convert` and name the result",
                    )
            for j, name in enumerate(a.explore.datasets):
                if refs.datasets[name].stored_format != "deepmd/npy":
                    raise refs.error(
                        f"{base}.explore.datasets[{j}]",
                        "start structures come from deepmd/npy datasets; "
                        f"{name!r} is {refs.datasets[name].format}",
                    )
            sel, ex, conv = a.select, a.explore, a.converge
            if sel.lo >= sel.hi:
                raise refs.error(
                    f"{base}.select.hi",
                    f"trust levels lo {sel.lo:g} >= hi {sel.hi:g} eV/Å: no frame could be a candidate; "
                    "give lo < hi",
                )
            for where, steps in [(f"{base}.explore.steps", ex.steps)] + [
                (f"{base}.explore.steps_by_iteration[{j}]", s) for j, s in enumerate(ex.steps_by_iteration)
            ]:
                if steps < ex.dump_every:
                    raise refs.error(
                        where,
                        f"{steps} MD steps with dump_every {ex.dump_every}: only the start structure would "
                        "be kept (nothing explored); give steps >= dump_every",
                    )
            if conv.accurate_fraction is None and conv.test_force_rmse is None:
                raise refs.error(
                    f"{base}.converge",
                    "no convergence criterion: give accurate_fraction (dpgen2's) or test_force_rmse (with a "
                    "held-out test dataset); max_iterations alone would never say converged",
                )
            if conv.test_force_rmse is not None and a.test is None:
                raise refs.error(
                    f"{base}.converge.test_force_rmse",
                    "needs a held-out dataset to test on: set test: <dataset>",
                )
            teacher = a.label.teacher
            if teacher is not None and teacher.model is not None:
                refs.need_model(f"{base}.label.teacher.model", teacher.model)
                if teacher.model.startswith(("compress.", "active.")):
                    raise refs.error(
                        f"{base}.label.teacher.model",
                        f"{teacher.model} cannot label a loop: name a pretrained, fine-tuned or distilled "
                        "model (a compressed one: the model it was compressed from)",
                    )
            elif teacher is not None:
                assert teacher.model_file is not None
                path = refs.resolve_file(teacher.model_file)
                if teacher.model_file.suffix != ".pth" or not path.is_file():
                    raise refs.error(
                        f"{base}.label.teacher.model_file",
                        f"{path}: not a frozen DeePMD-kit model (.pth) here",
                    )
            if a.label.command is not None and a.label.command.template is not None:
                path = refs.resolve_file(a.label.command.template)
                if not path.is_dir():
                    raise refs.error(f"{base}.label.command.template", f"{path}: no such folder")
            descriptor: dict[str, Any] | None
            if a.student is not None:
                descriptor = architecture(a.student)[0]
            elif a.from_.model_file is None and a.from_.model is None:
                descriptor = refs.spec_descriptor()
            else:
                descriptor = None
            refs.provide_model(base, f"active.{a.name}", descriptor)
            own = {refs.part(n, "train"): f"{base}.datasets[{j}]" for j, n in enumerate(a.datasets)}
            starts = {
                refs.part(n, "train"): f"{base}.explore.datasets[{j}]" for j, n in enumerate(ex.datasets)
            }
            refs.trained_on[f"active.{a.name}"] = {**own, **starts}  # the labelled frames start there
        refs.unique_slugs("active", self.yaml_path(), names)

    def _check_from(self, a: ActiveSpec, base: str, refs: References) -> None:
        from lamflow.workflows.stages.base import pretrain_heads

        src, heads = a.from_, pretrain_heads(refs.models)
        if src.model is not None:
            if src.model_file is not None:
                raise refs.error(f"{base}.from", "give model or model_file, not both")
            refs.need_model(f"{base}.from.model", src.model)
            if not refs.has_checkpoint(src.model):
                raise refs.error(
                    f"{base}.from.model", f"{src.model} has no training checkpoint to fine-tune from"
                )
        elif src.model_file is not None:
            path = refs.resolve_file(src.model_file)
            if src.model_file.suffix != ".pt" or not path.is_file():
                raise refs.error(
                    f"{base}.from.model_file", f"{path}: not a DeePMD-kit training checkpoint (.pt) here"
                )
            check_external_checkpoint(refs, base, path, src.head)
        elif not heads:
            raise refs.error(
                f"{base}.from", "no pretrain stage to start from: add stages.pretrain or give from"
            )
        elif src.head is None and len(heads) > 1:
            raise refs.error(
                f"{base}.from.head",
                f"required for a multi-task pretrain: one of {known(heads)} or '{RANDOM_HEAD}'",
            )
        elif src.head not in (None, RANDOM_HEAD, *heads):
            raise refs.error(f"{base}.from.head", f"no pretrain head {src.head!r} (heads: {known(heads)})")

    def guard(self, section: list[ActiveSpec], refs: References) -> None:
        assert refs.data is not None
        for i, a in enumerate(section):
            base = self.yaml_path(i)
            if a.student is None and a.from_.head != RANDOM_HEAD:
                refs.notices.append(
                    f"{base}.from: every ensemble member fine-tunes the same fitting net, so the members "
                    "start identical and differ only by the order of their batches: their model deviation "
                    "can be far below their error (examples/active.yaml measured 0.005-0.017 eV/Å of "
                    "deviation at 0.7-1 eV/Å of training force error) and the loop may stop early; "
                    "from.head: random gives each member a fitting net of its own"
                )
            elements: set[str] = set()
            periodic = False
            electrons: dict[str, int] = {}  # start system -> its electron count (neutral)
            for name in a.explore.datasets:
                info = refs.data.infos[refs.part(name, "train")]
                type_map = refs.data.type_maps.get(name)
                for system in info.systems:
                    electrons[f"{name!r} system {Path(system.path).name}"] = _electrons(system, type_map)
                    if a.explore.ensemble == "npt" and not system.pbc:
                        raise refs.error(
                            f"{base}.explore.ensemble",
                            f"NPT needs a periodic cell; {system.path} is not periodic (nopbc)",
                        )
                    periodic |= system.pbc
                    elements.update(system.elements(type_map))
                    frames = start_frames(system.nframes, a.explore.frames_per_system)
                    closest = closest_start(system, frames)
                    if closest is not None and closest[0] < MIN_DISTANCE:
                        raise refs.error(
                            f"{base}.explore.datasets",
                            f"atoms of the start structure {system.path} frame {closest[1]} are "
                            f"{closest[0]:.3f} Å apart: every MD would count as blown up at step 0",
                        )
            if a.test is not None:
                tested = refs.part(a.test, "test")
                if a.converge.test_force_rmse is not None and not all(
                    "force" in s.arrays for s in refs.data.infos[tested].systems
                ):
                    raise refs.error(
                        f"{base}.converge.test_force_rmse",
                        f"{a.test!r} has systems without forces: a force RMSE cannot be measured on it",
                    )
                shared = refs.training_overlap(f"active.{a.name}", tested)
                if shared is not None:
                    raise refs.overlap_error(
                        f"{base}.test", "held-out dataset", a.test, shared, f"active.{a.name}",
                        "hold out data the ensemble never trains on",
                    )  # fmt: skip
            if a.label.teacher is not None:
                guard_teacher(a.label.teacher, f"{base}.label.teacher", elements, a.explore.datasets, refs)
            pyscf = a.label.pyscf
            if pyscf is not None:
                if periodic:
                    raise refs.error(
                        f"{base}.label.pyscf",
                        "the PySCF labeler labels molecules; start structures of "
                        f"{known(a.explore.datasets)} are periodic: label them with a command (an external "
                        "periodic DFT code)",
                    )
                for path, count in electrons.items():
                    if (count - pyscf.charge - pyscf.spin) % 2:
                        raise refs.error(
                            f"{base}.label.pyscf.spin",
                            f"{path} has {count - pyscf.charge} electrons at charge {pyscf.charge}: spin "
                            f"(2S) {pyscf.spin} cannot fit that count; every SCF would fail — set spin (and "
                            "charge) to what the molecule is",
                        )
                missing = _without_basis(sorted(elements), pyscf.basis)
                if missing:
                    raise refs.error(
                        f"{base}.label.pyscf.basis",
                        f"PySCF's basis {pyscf.basis!r} has no functions for {', '.join(missing)} of the "
                        f"start structures ({known(a.explore.datasets)})",
                    )

    def plan(self, section: list[ActiveSpec], ctx: PlanContext) -> None:
        for i, a in enumerate(section):
            self._plan_loop(a, self.yaml_path(i), ctx)

    def _plan_loop(self, a: ActiveSpec, base: str, ctx: PlanContext) -> None:
        name = slug(a.name)
        checkpoint, branch, origin = self._source(a, ctx) if a.student is None else (None, "", "")
        train = tuple(ctx.part(n, "train") for n in a.datasets)
        body: list[StepPlan] = []

        carried: dict[str, CarriedArtifact] = {}

        def training_step(key: str, seed: int, labelled: str, what: str) -> StepPlan:
            training = a.training.model_copy(update={"seed": seed})
            if a.student is not None:  # the student's own model, trained from scratch
                deepmd_input = single_task_input(a.student, ctx.type_map, training, with_validation=False)
                # its own initial weights: DeePMD-kit seeds them from the model's seeds (training.seed only
                # orders the data), so members that share them start identical and never disagree
                for part in ("descriptor", "fitting_net"):
                    deepmd_input["model"][part]["seed"] = seed
            else:  # the model section comes from the checkpoint
                deepmd_input = single_task_input(
                    ctx.model, ctx.type_map, training, with_validation=False, descriptor={}, fitting_net={}
                )
            ctx.fit_virials(deepmd_input["loss"], a.training.loss, train, base)
            so_far = "the frames labelled so far" if labelled == LABELLED else "the random picks so far"
            previous: dict[str, ArtifactSource] = {}
            start = origin if a.student is None else "scratch"
            if a.init_from_previous:  # iteration n+1 starts from this member's checkpoint of iteration n
                carried[f"{key}-checkpoint"] = CarriedArtifact(None, IterationOutput(key, "checkpoint"))
                previous["previous"] = Carried(f"{key}-checkpoint")
                start = f"iteration 1: {start}; then its own checkpoint of the iteration before"
            data = f"on {', '.join(a.datasets)} and {so_far}, {a.training.steps} steps"
            head_datasets = {a.name: HeadData(train=list(train))}
            params: ScratchParams | FinetuneParams
            if a.student is not None:
                op: type[ScratchOP] | type[FinetuneOP] = ScratchOP
                how = f"dp train {a.student.preset} student (from {start})"
                params = ScratchParams(
                    deepmd_input=deepmd_input, head_datasets=head_datasets, dataset_formats=ctx.formats(train)
                )
                base_checkpoint: dict[str, ArtifactSource] = {}
            else:
                assert checkpoint is not None
                op, how = FinetuneOP, f"dp train --finetune ({start})"
                params = FinetuneParams(
                    deepmd_input=deepmd_input,
                    head_datasets=head_datasets,
                    dataset_formats=ctx.formats(train),
                    model_branch=branch,
                )
                base_checkpoint = {"base_checkpoint": checkpoint}
            return StepPlan(
                key=key,
                op=op,
                resource="finetune",
                summary=f"{what}: {how} {data}",
                params=params,
                artifacts={
                    "datasets": DatasetBundle(train),
                    **base_checkpoint,
                    "labelled": Carried(labelled),
                    **previous,
                },
            )

        for k in range(1, a.ensemble + 1):
            seed = a.training.seed + k - 1
            body.append(training_step(f"train-{k}", seed, LABELLED, f"ensemble model {k}/{a.ensemble}"))
        branches = self._explore(a, body, ctx)
        collecting, collected = collect_tree(branches, "collect", IterationOutput)
        body += collecting
        model_inputs: dict[str, ArtifactSource] = {
            f"model{k}": IterationOutput(f"train-{k}", "model") for k in range(1, a.ensemble + 1)
        }
        body.append(
            StepPlan(
                key="model-devi",
                op=ModelDeviOP,
                summary=f"max force deviation of the {a.ensemble} models on every explored frame",
                params=ModelDeviParams(models=a.ensemble),
                artifacts={"branches": collected, **model_inputs},
            )
        )
        sel = a.select
        body.append(
            StepPlan(
                key="select",
                op=SelectFramesOP,
                summary=f"frames between the trust levels {sel.lo:g} and {sel.hi:g} eV/Å, at most "
                f"{sel.max_picks}",
                params=SelectFramesParams(
                    lo=sel.lo,
                    hi=sel.hi,
                    max_picks=sel.max_picks,
                    random_baseline=sel.random_baseline,
                    seed=a.explore.seed,
                ),  # fmt: skip
                artifacts={
                    "branches": collected,
                    "deviations": IterationOutput("model-devi", "deviations"),
                },
                short=True,
            )
        )
        carried[LABELLED] = CarriedArtifact(None, IterationOutput("merge", "labelled"))
        body += self._label_and_merge(a, ctx, "")
        converge_inputs: dict[str, ArtifactSource] = {
            "picked": IterationOutput("select", "picked"),
            "labels": IterationOutput("merge", "labels"),  # every label step's report, summed
        }
        if sel.random_baseline:  # the same budget on random picks: its own labels, model and test
            carried[RANDOM_LABELLED] = CarriedArtifact(None, IterationOutput("merge-random", "labelled"))
            body += self._label_and_merge(a, ctx, "-random")
            body.append(training_step("train-random", a.training.seed, RANDOM_LABELLED, "random baseline"))
        if a.test is not None:
            body.append(self._test(a, ctx, train, ""))
            converge_inputs["test_log"] = IterationOutput("test", "log")
            if sel.random_baseline:
                body.append(self._test(a, ctx, train, "-random"))
                converge_inputs["random_test_log"] = IterationOutput("test-random", "log")
        conv = a.converge
        body.append(
            StepPlan(
                key="converge",
                op=ConvergeOP,
                summary="stop or go on: "
                + ", ".join(
                    c
                    for c in (
                        f"accurate fraction >= {conv.accurate_fraction:g}" if conv.accurate_fraction else "",
                        f"test force RMSE <= {conv.test_force_rmse:g} eV/Å" if conv.test_force_rmse else "",
                        f"at most {conv.max_iterations} iterations",
                    )
                    if c
                ),  # fmt: skip
                params=ConvergeParams(
                    iteration=1,
                    max_iterations=conv.max_iterations,
                    accurate_fraction=conv.accurate_fraction or 0.0,
                    test_force_rmse=conv.test_force_rmse or 0.0,
                ),
                artifacts=converge_inputs,
                short=True,
            )
        )
        loop = LoopPlan(
            key=f"active-{name}",
            summary=f"concurrent learning {a.name}: ensemble of {a.ensemble}, MD, selection, "
            f"{'PySCF' if a.label.pyscf else 'teacher' if a.label.teacher else 'command'} labels, up to "
            f"{conv.max_iterations} iterations",
            body=tuple(body),
            carried=carried,
            decision="converge",
            outputs={
                "model": IterationOutput("train-1", "model"),
                "checkpoint": IterationOutput("train-1", "checkpoint"),
                "labelled": IterationOutput("merge", "labelled"),
            },
            max_iterations=conv.max_iterations,
            position=len(ctx.steps),
            model_ref=f"active.{a.name}",
        )
        ctx.add_loop(loop, base)
        ctx.models[f"active.{a.name}"] = LoopOutput(loop.key, "model")
        ctx.checkpoints[f"active.{a.name}"] = LoopOutput(loop.key, "checkpoint")

    @staticmethod
    def _source(a: ActiveSpec, ctx: PlanContext) -> tuple[ArtifactSource, str, str]:
        """(checkpoint, head to start from, words for people) of every ensemble member."""
        src = a.from_
        if src.model_file is not None:
            branch = RANDOM_BRANCH if src.head == RANDOM_HEAD else src.head or ""
            return LocalFile(ctx.resolve_file(src.model_file)), branch, src.model_file.name
        if src.model is not None:
            checkpoint, branch = ctx.finetune_source(src.model)
            return checkpoint, RANDOM_BRANCH if src.head == RANDOM_HEAD else branch, src.model
        if src.head == RANDOM_HEAD:
            return ctx.checkpoints[CHECKPOINT_REF], RANDOM_BRANCH, "pretrain, random fitting net"
        if src.head is None:
            checkpoint, branch = ctx.checkpoints[CHECKPOINT_REF], ""
            from lamflow.workflows.stages.base import pretrain_heads

            heads = pretrain_heads(ctx.models)
            if len(heads) == 1:
                checkpoint, branch = ctx.finetune_source(f"pretrain.{heads[0]}")
            return checkpoint, branch, "pretrain"
        checkpoint, branch = ctx.finetune_source(f"pretrain.{src.head}")
        return checkpoint, branch, f"pretrain head {src.head}"

    @staticmethod
    def _explore(a: ActiveSpec, body: list[StepPlan], ctx: PlanContext) -> list[IterationOutput]:
        ex = a.explore
        perturb = None if ex.perturb is None else Perturbation(**ex.perturb.model_dump())
        outputs = []
        k = 0
        for dataset in (ctx.part(n, "train") for n in ex.datasets):
            for s, system in enumerate(ctx.dataset_info[dataset].systems):
                for frame in start_frames(system.nframes, ex.frames_per_system):
                    for copy in range(ex.perturb.copies if ex.perturb else 1):
                        start = StartStructure(dataset=dataset, system=s, frame=frame, perturbed_copy=copy)
                        for t in ex.temperatures:
                            branch = f"s{k}-{temperature_key(t)}"
                            body.append(
                                StepPlan(
                                    key=f"explore-{branch}",
                                    op=LoopExploreOP,
                                    summary=f"{ex.ensemble.upper()} MD at {t:g} K from {dataset} system {s} "
                                    f"frame {frame}, driven by ensemble model 1",
                                    params=LoopExploreParams(
                                        branch=branch,
                                        start=start,
                                        temperature=t,
                                        perturb=perturb,
                                        seed=ex.seed + k,
                                        min_distance=MIN_DISTANCE,
                                        dataset_formats=ctx.formats([dataset]),
                                        steps_by_iteration=list(ex.steps_by_iteration),
                                        **md_settings(ex),
                                    ),  # fmt: skip
                                    artifacts={
                                        "teacher": IterationOutput("train-1", "model"),
                                        "datasets": DatasetBundle((dataset,)),
                                    },
                                )
                            )
                            outputs.append(IterationOutput(f"explore-{branch}", "branch"))
                        k += 1
        return outputs

    @staticmethod
    def _test(a: ActiveSpec, ctx: PlanContext, train: tuple[str, ...], suffix: str) -> StepPlan:
        assert a.test is not None
        tested = ctx.part(a.test, "test")
        who = "the random baseline" if suffix else "ensemble model 1"
        return StepPlan(
            key=f"test{suffix}",
            op=TestOP,
            summary=f"dp test of {who} on {tested} (held out)",
            params=TestParams(
                dataset=tested, baseline_dataset=train[0], dataset_formats=ctx.formats((tested, train[0]))
            ),
            artifacts={
                "model": IterationOutput("train-random" if suffix else "train-1", "model"),
                "datasets": DatasetBundle(tuple(dict.fromkeys((tested, train[0])))),
            },
            short=True,
        )

    def _label_and_merge(self, a: ActiveSpec, ctx: PlanContext, suffix: str) -> list[StepPlan]:
        """Label the picks (``suffix`` '-random': the random ones) — in ``label.parallel`` steps that share
        them — and merge them into what is carried."""
        shares = a.label.parallel
        labels = [self._label(a, ctx, suffix, share, shares) for share in range(1, shares + 1)]
        merge = StepPlan(
            key=f"merge{suffix}",
            op=MergeLabelsOP,
            summary="every frame labelled so far, one dataset" + (" (random picks)" if suffix else ""),
            params=MergeLabelsParams(parts=shares),
            artifacts={
                "previous": Carried(RANDOM_LABELLED if suffix else LABELLED),
                **{
                    "labels" if k == 1 else f"labels{k}": IterationOutput(label.key, "labels")
                    for k, label in enumerate(labels, start=1)
                },
            },
            short=True,
        )
        return [*labels, merge]

    @staticmethod
    def _label(a: ActiveSpec, ctx: PlanContext, suffix: str, share: int, shares: int) -> StepPlan:
        artifacts: dict[str, ArtifactSource] = {"picked": IterationOutput("select", "picked")}
        if a.label.pyscf is not None:
            p = a.label.pyscf
            params = LabelDftParams(
                labeler="pyscf",
                frames="random" if suffix else "picked",
                pyscf=PyscfParams(**p.model_dump()),
                type_map=ctx.type_map,
            )
            what = f"PySCF {p.functional}/{p.basis}"
        elif a.label.teacher is not None:
            t = a.label.teacher
            params = LabelDftParams(
                labeler="teacher", frames="random" if suffix else "picked", type_map=ctx.type_map
            )
            if t.model is not None:
                artifacts["teacher"] = ctx.models[t.model]
                what = t.model
            else:
                assert t.model_file is not None
                artifacts["teacher"] = LocalFile(ctx.resolve_file(t.model_file))
                what = t.model_file.name
        else:
            c = a.label.command
            assert c is not None
            params = LabelDftParams(
                labeler="command",
                frames="random" if suffix else "picked",
                command=CommandParams(**c.model_dump(exclude={"template", "image"})),
                type_map=ctx.type_map,
            )
            if c.template is not None:
                artifacts["template"] = LocalFile(ctx.resolve_file(c.template))
            what = f"`{c.command}`"
        part = f", share {share} of {shares}" if shares > 1 else ""
        return StepPlan(
            key=f"label{suffix}" + (f"-{share}" if shares > 1 else ""),
            op=LabelDftOP,
            summary=f"label the {'random' if suffix else 'picked'} frames with {what}{part}",
            params=params.model_copy(update={"share": share, "shares": shares}),
            artifacts=artifacts,
            image=a.label.command.image if a.label.command is not None else None,
        )


def _electrons(system: SystemInfo, type_map: Sequence[str] | None) -> int:
    """Electrons of the neutral system (the sum of its atoms' atomic numbers)."""
    from ase.data import atomic_numbers

    names = tuple(type_map) if type_map is not None else system.type_map or ()
    return sum(count * atomic_numbers.get(names[t], 0) for t, count in enumerate(system.type_counts) if count)


def _without_basis(elements: list[str], basis: str) -> list[str]:
    try:
        from lamflow.ops.labeling.pyscf_dft import elements_without_basis
    except ImportError:  # pragma: no cover - PySCF is part of lamflow[dft], installed by the bootstrap
        return []
    return elements_without_basis(elements, basis)


STAGE = ActiveStage()
