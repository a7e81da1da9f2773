"""Stage ``distill``: the teacher explores (MD with ASE, one step per temperature x start structure), the
branches are collected, frames are selected and labelled by the teacher, and a compressible student is
trained on the labels and frozen. Provides the model references ``distill.<name>``.

Step keys: ``explore-<name>-s<i>-<T>k``, ``collect-<name>`` (plus ``collect-<name>-<level>-<j>`` when more
than 8 branches are merged), ``label-<name>``, ``student-<name>``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from lamflow.ops.collect import FAN_IN, CollectOP, CollectParams
from lamflow.ops.dp import DpError, model_type_map
from lamflow.ops.explore import ExploreOP, ExploreParams, Perturbation, StartStructure
from lamflow.ops.label import LabelOP, LabelParams
from lamflow.ops.student import StudentOP, StudentParams
from lamflow.workflows.compile.deepmd_input import architecture, single_task_input
from lamflow.workflows.compile.plan import ArtifactSource, DatasetBundle, LocalFile, StepOutput, StepPlan
from lamflow.workflows.spec.base import slug
from lamflow.workflows.spec.distill import DistillSpec, ExploreSpec, TeacherSpec
from lamflow.workflows.stages._guards import closest_start
from lamflow.workflows.stages.base import PlanContext, References, Stage, known


def start_frames(nframes: int, per_system: int) -> list[int]:
    """``per_system`` evenly spaced frame indices (all frames when the system has fewer)."""
    return sorted({int(i) for i in np.linspace(0, nframes - 1, min(per_system, nframes)).round()})


def md_settings(ex: ExploreSpec) -> dict[str, Any]:
    """The MD settings every exploration step takes from its stage's ``explore:`` section."""
    return {
        "ensemble": ex.ensemble, "pressure_bar": ex.pressure_bar, "steps": ex.steps,
        "timestep_fs": ex.timestep_fs, "dump_every": ex.dump_every, "friction": ex.friction,
        "on_blowup": ex.on_blowup,
    }  # fmt: skip


def collect_tree(
    parts: Sequence[StepOutput], key: str, output: type[StepOutput]
) -> tuple[list[StepPlan], StepOutput]:
    """The collect steps of exploration outputs ``parts``: a tree of steps with at most FAN_IN inputs each,
    ending in step ``key`` (``<key>-<level>-<j>`` below it); ``output`` is the kind of reference their
    readers use (a loop body's: IterationOutput). Returns the steps, in order, and the root's output."""
    steps: list[StepPlan] = []
    level = 0
    while True:
        chunks = [parts[i : i + FAN_IN] for i in range(0, len(parts), FAN_IN)]
        merged = []
        for j, chunk in enumerate(chunks):
            step_key = key if len(chunks) == 1 else f"{key}-{level}-{j}"
            steps.append(
                StepPlan(
                    key=step_key,
                    op=CollectOP,
                    summary=f"collect {len(chunk)} exploration outputs",
                    params=CollectParams(parts=len(chunk)),
                    artifacts={f"part{n + 1}": part for n, part in enumerate(chunk)},
                    short=True,
                )
            )
            merged.append(output(step_key, "branches"))
        if len(chunks) == 1:
            return steps, merged[0]
        parts, level = merged, level + 1


def guard_teacher(
    teacher: TeacherSpec, where: str, elements: set[str], starts: Sequence[str], refs: References
) -> None:
    """A teacher (at YAML path ``where``) labels every element of the start structures (datasets
    ``starts``): its type map has it and, for a model of this spec, its training data held it (a type map
    may name an element only because the spec's type map is the union of all datasets). Shared by the
    distill stage and the loop's teacher labeler."""
    if teacher.model is not None:
        where = f"{where}.model"
        learned = refs.learned_elements(teacher.model)
        if learned is not None:
            unlearned = sorted(elements - learned)
            if unlearned:
                seen = known(sorted(refs.learned_from[teacher.model]))
                raise refs.error(
                    where,
                    f"the teacher {teacher.model} never learned {', '.join(unlearned)} (trained on "
                    f"{seen}), which the start structures ({known(starts)}) hold: its labels "
                    "for them would be meaningless; teach with a model trained on data holding them",
                )
            return
        known_map = refs.type_maps.get(teacher.model)
        if known_map is None:
            return
        type_map = list(known_map)  # an external model's
    else:
        path = refs.resolve_file(teacher.model_file)  # type: ignore[arg-type]
        where = f"{where}.model_file"
        try:
            type_map = model_type_map(path)
        except (DpError, ValueError, OSError) as exc:
            raise refs.error(where, f"{path}: cannot read its type map ({exc})") from None
    missing = sorted(elements - set(type_map))
    if missing:
        raise refs.error(
            where,
            f"the teacher's type map {type_map} lacks {', '.join(missing)} of the start structures "
            f"({known(starts)})",
        )


def temperature_key(t: float) -> str:
    return f"{t:g}".replace(".", "p") + "k"


class DistillStage(Stage[list[DistillSpec]]):
    key = "distill"
    order = 30

    def check(self, section: list[DistillSpec], refs: References) -> None:
        names: dict[str, int] = {}
        for i, d in enumerate(section):
            base = self.yaml_path(i)
            refs.claim_name(self.key, names, d.name, i)
            teacher = d.teacher
            if teacher.model is not None:
                refs.need_model(f"{base}.teacher.model", teacher.model)
                if teacher.model.startswith("compress."):
                    raise refs.error(
                        f"{base}.teacher.model",
                        "a compressed model cannot teach: name the model it was compressed from",
                    )
            else:
                assert teacher.model_file is not None
                path = refs.resolve_file(teacher.model_file)
                if teacher.model_file.suffix != ".pth":
                    raise refs.error(
                        f"{base}.teacher.model_file",
                        f"{teacher.model_file}: a teacher is a frozen DeePMD-kit model (.pth)",
                    )
                if not path.is_file():
                    raise refs.error(f"{base}.teacher.model_file", f"{path}: no such file")
            for j, name in enumerate(d.explore.datasets):
                where = f"{base}.explore.datasets[{j}]"
                refs.need_dataset(where, name, labels=None)  # start structures: no labels read
                if refs.datasets[name].stored_format != "deepmd/npy":
                    raise refs.error(
                        where,
                        f"start structures come from deepmd/npy datasets; {name!r} is "
                        f"{refs.datasets[name].format}",
                    )
            if d.explore.steps < d.explore.dump_every:
                raise refs.error(
                    f"{base}.explore.steps",
                    f"{d.explore.steps} MD steps with dump_every {d.explore.dump_every}: only the start "
                    "structure would be kept (nothing explored); give steps >= dump_every",
                )
            student = d.student
            descriptor, _ = architecture(student)
            refs.provide_model(base, f"distill.{d.name}", descriptor)
            # the student's labels start at the start structures themselves (MD step 0): it trained on them
            starts = {refs.part(n, "train"): f"{base}.explore.datasets[{j}]"
                      for j, n in enumerate(d.explore.datasets)}  # fmt: skip
            refs.trained_on[f"distill.{d.name}"] = {**refs.trained_on.get(teacher.model or "", {}), **starts}
            refs.learned_from[f"distill.{d.name}"] = starts
        refs.unique_slugs("distill", self.yaml_path(), names)

    def guard(self, section: list[DistillSpec], refs: References) -> None:
        assert refs.data is not None
        for i, d in enumerate(section):
            base = self.yaml_path(i)
            elements: set[str] = set()
            for name in d.explore.datasets:
                info = refs.data.infos[refs.part(name, "train")]
                type_map = refs.data.type_maps.get(name)
                for system in info.systems:
                    if d.explore.ensemble == "npt" and not system.pbc:
                        raise refs.error(
                            f"{base}.explore.ensemble",
                            f"NPT needs a periodic cell; {system.path} is not periodic (nopbc)",
                        )
                    elements.update(system.elements(type_map))
                    frames = start_frames(system.nframes, d.explore.frames_per_system)
                    closest = closest_start(system, frames)
                    if closest is not None and closest[0] < d.select.min_distance:
                        raise refs.error(
                            f"{base}.select.min_distance",
                            f"{d.select.min_distance:g} Å, but atoms of the start structure {system.path} "
                            f"frame {closest[1]} are {closest[0]:.3f} Å apart: every MD would count as blown "
                            "up at step 0; give a min_distance below the start structures' own",
                        )
            guard_teacher(d.teacher, f"{base}.teacher", elements, d.explore.datasets, refs)

    def plan(self, section: list[DistillSpec], ctx: PlanContext) -> None:
        for i, d in enumerate(section):
            base = self.yaml_path(i)
            name = slug(d.name)
            teacher: ArtifactSource
            if d.teacher.model is not None:
                teacher, teacher_name = ctx.models[d.teacher.model], d.teacher.model
            else:
                assert d.teacher.model_file is not None
                teacher, teacher_name = (
                    LocalFile(ctx.resolve_file(d.teacher.model_file)),
                    f"file:{d.teacher.model_file.name}",
                )
            ctx.teachers[f"distill.{d.name}"] = (teacher_name, teacher)
            branches = self._explore(d, name, teacher, ctx, base)
            steps, root = collect_tree(branches, f"collect-{name}", StepOutput)
            for step in steps:
                ctx.add(step, f"{base}.explore")
            sel = d.select
            label = ctx.add(
                StepPlan(
                    key=f"label-{name}",
                    op=LabelOP,
                    summary=f"select frames ({len(branches)} branches) and label them with {teacher_name}",
                    params=LabelParams(
                        stride=sel.stride,
                        max_frames=sel.max_frames,
                        min_distance=sel.min_distance,
                        max_force=sel.max_force,
                        duplicate_rmsd=sel.duplicate_rmsd,
                        validation_fraction=sel.validation_fraction,
                        seed=d.explore.seed,
                    ),  # fmt: skip
                    artifacts={"branches": root, "teacher": teacher},
                ),
                f"{base}.select",
            )
            student = d.student
            deepmd_input = single_task_input(
                student, ctx.type_map, student.training, with_validation=sel.validation_fraction > 0
            )
            step = ctx.add(
                StepPlan(
                    key=f"student-{name}",
                    op=StudentOP,
                    resource="finetune",
                    model_ref=f"distill.{d.name}",
                    checkpoint_ref=f"distill.{d.name}",
                    summary=f"dp train {student.preset} student on the teacher's labels, "
                    f"{student.training.steps} steps; dp freeze",
                    params=StudentParams(deepmd_input=deepmd_input),
                    artifacts={"labels": label.output("labels")},
                ),
                f"{base}.student",
            )
            ctx.models[f"distill.{d.name}"] = step.output("model")
            ctx.checkpoints[f"distill.{d.name}"] = step.output("checkpoint")

    def _explore(
        self, d: DistillSpec, name: str, teacher: ArtifactSource, ctx: PlanContext, base: str
    ) -> list[StepOutput]:
        ex = d.explore
        starts: list[StartStructure] = []
        for dataset in (ctx.part(n, "train") for n in ex.datasets):
            for s, system in enumerate(ctx.dataset_info[dataset].systems):
                for frame in start_frames(system.nframes, ex.frames_per_system):
                    for copy in range(ex.perturb.copies if ex.perturb else 1):
                        starts.append(
                            StartStructure(dataset=dataset, system=s, frame=frame, perturbed_copy=copy)
                        )
        perturb = None if ex.perturb is None else Perturbation(**ex.perturb.model_dump())
        outputs = []
        for k, start in enumerate(starts):
            for t in ex.temperatures:
                branch = f"s{k}-{temperature_key(t)}"
                step = ctx.add(
                    StepPlan(
                        key=f"explore-{name}-{branch}",
                        op=ExploreOP,
                        summary=f"{ex.ensemble.upper()} MD at {t:g} K, {ex.steps} steps, from "
                        f"{start.dataset} system {start.system} frame {start.frame}"
                        + (f" (perturbed {start.perturbed_copy})" if perturb else ""),
                        params=ExploreParams(
                            branch=branch,
                            start=start,
                            temperature=t,
                            perturb=perturb,
                            seed=ex.seed + k,
                            min_distance=d.select.min_distance,
                            dataset_formats=ctx.formats([start.dataset]),
                            **md_settings(ex),
                        ),  # fmt: skip
                        artifacts={"teacher": teacher, "datasets": DatasetBundle((start.dataset,))},
                    ),
                    f"{base}.explore",
                )
                outputs.append(step.output("branch"))
        return outputs


STAGE = DistillStage()
