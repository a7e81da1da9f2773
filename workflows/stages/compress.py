"""Stage ``compress``: ``dp --pt compress`` of a model of the spec with the drift check, and optionally the
side-by-side evaluation of teacher, student and compressed student. Provides ``compress.<name>``.

Step keys: ``compress-<name>``, ``evaluate-<name>``. Models DeePMD-kit cannot compress are refused at
validate time; a DPA-2 model is compressed only in its repinit block, which validate says.
"""

from __future__ import annotations

from typing import Any

from lamflow.ops.compress import CompressOP, CompressParams
from lamflow.ops.evaluate import EvaluateOP, EvaluateParams, NveParams
from lamflow.workflows.compile.plan import Comparison, DatasetBundle, StepPlan
from lamflow.workflows.spec.base import slug
from lamflow.workflows.spec.compress import CompressSpec
from lamflow.workflows.stages._guards import closest_start
from lamflow.workflows.stages.base import PlanContext, References, Stage

_TABULATED = ("se_e2_a", "se_a", "se_e2_r", "se_r", "se_e3", "se_at", "se_a_3be", "se_e3_tebd")
_ATTENTION = ("se_atten", "dpa1", "se_atten_v2")
_NEVER = ("dpa3", "dpa4", "sezm")


def compressibility(descriptor: dict[str, Any]) -> tuple[str | None, str | None]:
    """(why DeePMD-kit 3.2 cannot compress this descriptor, what compression will leave untouched)."""
    kind = str(descriptor.get("type", "")).lower()
    if kind == "hybrid":
        found = [compressibility(d) for d in descriptor.get("list", [])]
        errors = [e for e, _ in found if e]
        notes = [n for _, n in found if n]
        return (errors[0] if errors else None), ("; ".join(notes) or None)
    if kind in _NEVER:
        return f"DeePMD-kit cannot compress {kind.upper()} models (NotImplementedError in dp compress)", None
    if kind in _TABULATED:
        if descriptor.get("resnet_dt"):
            return f"{kind} with resnet_dt: true cannot be compressed (set descriptor.resnet_dt: false)", None
        return None, None
    if kind in _ATTENTION:
        if kind != "se_atten_v2" and descriptor.get("tebd_input_mode", "concat") != "strip":
            return f"{kind} compresses only with tebd_input_mode: strip", None
        if int(descriptor.get("attn_layer", 2)) != 0:
            return (
                None,
                f"{kind} with attention layers: only the type embedding is tabulated, not the geometry",
            )
        return None, None
    if kind == "dpa2":
        repinit = descriptor.get("repinit", {})
        if repinit.get("tebd_input_mode", "concat") != "strip":
            why = "DPA-2 compresses only with repinit.tebd_input_mode: strip (as DeePMD-kit's example)"
            return why, None
        if repinit.get("resnet_dt"):
            return "DPA-2 compresses only with repinit.resnet_dt: false", None
        return None, ("DPA-2 is compressed only in its repinit block; the repformer layers run as before, so "
                      "the speed-up is limited (DeePMD-kit doc/model/dpa2.md)")  # fmt: skip
    return None, None  # a descriptor this check does not know: dp compress decides at run time


class CompressStage(Stage[list[CompressSpec]]):
    key = "compress"
    order = 40

    def check(self, section: list[CompressSpec], refs: References) -> None:
        names: dict[str, int] = {}
        for i, c in enumerate(section):
            base = self.yaml_path(i)
            refs.claim_name(self.key, names, c.name, i)
            refs.need_model(f"{base}.model", c.model)
            if c.model.startswith("compress."):
                raise refs.error(f"{base}.model", f"{c.model} is already compressed")
            descriptor = refs.descriptors.get(c.model)
            if descriptor is not None:
                problem, note = compressibility(descriptor)
                if problem is not None:
                    raise refs.error(f"{base}.model", f"{c.model} cannot be compressed: {problem}")
                if note is not None:
                    refs.notices.append(f"{base}.model: {c.model}: {note}")
            refs.need_dataset(f"{base}.drift.dataset", c.drift.dataset, labels=None)  # predictions compared
            if c.evaluate is not None:
                refs.need_dataset(f"{base}.evaluate.dataset", c.evaluate.dataset)
            refs.provide_model(base, f"compress.{c.name}", None)
            refs.trained_on[f"compress.{c.name}"] = dict(refs.trained_on.get(c.model, {}))
            if c.model in refs.learned_from:
                refs.learned_from[f"compress.{c.name}"] = dict(refs.learned_from[c.model])
        refs.unique_slugs("compress", self.yaml_path(), names)

    def guard(self, section: list[CompressSpec], refs: References) -> None:
        """The evaluation's errors are measured on frames no model of the comparison trained on (the
        student's labels include its teacher's MD start structures; the teacher's own training data), and
        its NVE runs can measure a drift."""
        data = refs.data
        assert data is not None
        for i, c in enumerate(section):
            if c.evaluate is None:
                continue
            base = f"{self.yaml_path(i)}.evaluate"
            tested = refs.part(c.evaluate.dataset, "test")
            shared = refs.training_overlap(c.model, tested)
            if shared is not None:
                owner = f"{c.model} or its teacher"
                advice = "evaluate on held-out frames"
                raise refs.overlap_error(f"{base}.dataset", "evaluation data", tested, shared, owner, advice)
            nve = c.evaluate.nve
            if nve is None:
                continue
            if nve.steps < nve.dump_every:
                raise refs.error(
                    f"{base}.nve.steps",
                    f"{nve.steps} NVE steps with dump_every {nve.dump_every}: one energy sample, no drift "
                    "to measure; give steps >= dump_every",
                )
            starts = [(s, f) for s in data.infos[tested].systems for f in range(s.nframes)][: nve.structures]
            for system in dict.fromkeys(s for s, _ in starts):
                frames = [f for s, f in starts if s is system]
                closest = closest_start(system, frames)
                if closest is not None and closest[0] < nve.min_distance:
                    raise refs.error(
                        f"{base}.nve.min_distance",
                        f"{nve.min_distance:g} Å, but atoms of the start structure {system.path} frame "
                        f"{closest[1]} are {closest[0]:.3f} Å apart: every NVE run would count as exploded "
                        "at step 0; give a min_distance below the start structures' own",
                    )

    def plan(self, section: list[CompressSpec], ctx: PlanContext) -> None:
        for i, c in enumerate(section):
            base = self.yaml_path(i)
            name = slug(c.name)
            source = ctx.models[c.model]
            drift = ctx.part(c.drift.dataset, "test")
            compressed = ctx.add(
                StepPlan(
                    key=f"compress-{name}",
                    op=CompressOP,
                    model_ref=f"compress.{c.name}",
                    summary=f"dp compress {c.model} (stride {c.step:g}); drift check on {drift}",
                    params=CompressParams(
                        step=c.step,
                        extrapolate=c.extrapolate,
                        frequency=c.frequency,
                        dataset=drift,
                        frames=c.drift.frames,
                        max_energy_drift=c.drift.energy_rmse_per_atom,
                        max_force_drift=c.drift.force_rmse,
                        dataset_formats=ctx.formats([drift]),
                    ),
                    artifacts={"model": source, "datasets": DatasetBundle((drift,))},
                ),
                base,
            )
            ctx.models[f"compress.{c.name}"] = compressed.output("model")
            if c.evaluate is None:
                continue
            ev = c.evaluate
            tested = ctx.part(ev.dataset, "test")
            roles: list[tuple[str, str]] = []
            artifacts: dict[str, Any] = {
                "student": source,
                "compressed": compressed.output("model"),
                "datasets": DatasetBundle((tested,)),
            }
            teacher = ctx.teachers.get(c.model)
            if teacher is not None:
                roles.append(("teacher", teacher[0]))
                artifacts["teacher"] = teacher[1]
            roles += [("student", c.model), ("compressed", f"compress.{c.name}")]
            nve = None if ev.nve is None else NveParams(**ev.nve.model_dump())
            ctx.add(
                StepPlan(
                    key=f"evaluate-{name}",
                    op=EvaluateOP,
                    summary=f"{', '.join(r for _, r in roles)} on {tested}: errors, µs/atom"
                    + (", NVE drift" if nve else ""),
                    params=EvaluateParams(
                        dataset=tested,
                        frames=ev.frames,
                        models=dict(roles),
                        repeats=ev.repeats,
                        warmup=ev.warmup,
                        threads=ev.threads,
                        nve=nve,
                        dataset_formats=ctx.formats([tested]),
                    ),
                    artifacts=artifacts,
                    comparison=Comparison(tested, tuple(roles)),
                ),
                f"{base}.evaluate",
            )


STAGE = CompressStage()
