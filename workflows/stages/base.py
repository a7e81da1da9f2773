"""What a stage is: its spec section, its cross-reference checks and the steps it adds to the plan.

Stages run in ``order``. Checking: each stage sees :class:`References` (datasets, the model references
earlier stages provide) and registers the model references it provides. Planning: each stage adds its
steps to a :class:`PlanContext` and registers the step outputs behind its model references. Errors are
:class:`SpecError` naming the spec file and the YAML path.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Generic, TypeVar

from lamflow.ops.data.datasets import DatasetFormat, DatasetInfo
from lamflow.ops.test import PropertyTarget
from lamflow.workflows.compile.deepmd_input import architecture
from lamflow.workflows.compile.plan import ArtifactSource, LocalFile, LoopPlan, StepOutput, StepPlan
from lamflow.workflows.errors import SpecError
from lamflow.workflows.spec.base import slug
from lamflow.workflows.spec.datasets import PropertySpec
from lamflow.workflows.spec.model import ModelSpec
from lamflow.workflows.stages._guards import Datasets, sel_shortfalls

SectionT = TypeVar("SectionT")
TRAINED_STAGES = ("pretrain", "finetune", "active", "distill")  # their models come with a training checkpoint
VIRIAL_PREFS = {"start_pref_v": 0.02, "limit_pref_v": 1.0}  # DeePMD-kit's usual virial schedule
ENERGY = "energy"  # what an energy model's training or test reads from a dataset (References.need_dataset)
CHECKPOINT_REF = "pretrain"  # key of the pretraining checkpoint in PlanContext.checkpoints


def pretrain_heads(model_refs: Iterable[str]) -> list[str]:
    """Heads of this spec's pretraining, from the model references registered so far."""
    return [ref.partition(".")[2] for ref in model_refs if ref.startswith("pretrain.")]


def known(names: Iterable[str]) -> str:
    names = list(names)
    return ", ".join(names) if names else "none"


@dataclass
class References:
    """What a stage's checks may look up; stages register the model references they provide."""

    shown: str  # the spec file, for messages
    base_dir: Path
    datasets: Mapping[str, Any]
    models: dict[str, str] = field(default_factory=dict)  # model reference -> YAML path defining it
    data: Datasets | None = None  # the inspected datasets, set before the stages' guards run
    trained_on: dict[str, dict[str, str]] = field(default_factory=dict)  # model -> {dataset: YAML path}
    overlaps: set[tuple[str, str]] = field(
        default_factory=set
    )  # (model, dataset) tested on its training data
    model: ModelSpec | None = None  # the spec's architecture (the descriptor of its trained models)
    descriptors: dict[str, dict[str, Any] | None] = field(
        default_factory=dict
    )  # model reference -> its DeePMD-kit descriptor (None: not known before the run)
    notices: list[str] = field(default_factory=list)  # what validate tells the user (not errors)
    type_maps: dict[str, tuple[str, ...]] = field(
        default_factory=dict
    )  # model reference -> its element list, where it is known before the run (external models)
    checkpoints: set[str] = field(default_factory=set)  # external models that are training checkpoints
    unlearned: dict[tuple[str, str], tuple[str, ...]] = field(
        default_factory=dict
    )  # (model, dataset) -> elements of the dataset the model never trained on (results flagged)
    learned_from: dict[str, dict[str, str]] = field(
        default_factory=dict
    )  # model -> {dataset: YAML path} whose elements its fitting saw (absent: not known, an external model)

    predicts: dict[str, str] = field(default_factory=dict)  # property model -> its property (else energy)
    label_needs: list[tuple[str, str, str]] = field(
        default_factory=list
    )  # (YAML path, dataset, what it reads: 'energy' or a property name), checked by guard_labels

    def error(self, path: str, message: str) -> SpecError:
        return SpecError(self.shown, path, message)

    def need_dataset(self, path: str, name: str, labels: str | None = ENERGY) -> None:
        """The dataset exists; ``labels``: what the use reads from it — energies (the default: training or
        testing an energy model), a declared property's name, or None (structures only: MD starts, drift
        checks). Checked against the data by :meth:`guard_labels`."""
        if name not in self.datasets:
            hint = difflib.get_close_matches(name, list(self.datasets), n=1)
            extra = f"; did you mean {hint[0]!r}?" if hint else ""
            raise self.error(path, f"unknown dataset {name!r} (datasets: {known(self.datasets)}{extra})")
        if labels is not None:
            self.label_needs.append((path, name, labels))

    def guard_labels(self) -> None:
        """Every use of a dataset finds what it reads: an energy model's training or test finds energies
        (a property dataset may have none), a property study finds its property declared."""
        assert self.data is not None
        for path, name, labels in self.label_needs:
            declared = dict(getattr(self.datasets[name], "properties", None) or {})
            if labels == ENERGY:
                if any("energy" not in s.arrays for s in self.data.infos[name].systems):
                    holds = f"only the properties {known(declared)}" if declared else "no energies"
                    advice = (
                        f"; study a property with a transfer study's `property: {next(iter(declared))}`"
                        if declared
                        else ""
                    )
                    raise self.error(
                        path,
                        f"{name!r} holds {holds}: this step trains or tests an energy model, which needs "
                        f"energy.npy in every set{advice}",
                    )
            elif labels not in declared:
                has = f"declares {known(declared)}" if declared else "declares no properties"
                raise self.error(
                    path,
                    f"{name!r} {has}, not {labels!r}: a property model trains and tests on data that holds "
                    f"it (declare it as datasets.{name}.properties.{labels})",
                )

    def need_model(self, path: str, ref: str, any_kind: bool = False) -> None:
        """The model exists, and predicts energies unless ``any_kind`` (a property model's checkpoint or
        frozen model serves tests and property fine-tunes only)."""
        if ref in self.models:
            if not any_kind and ref in self.predicts:
                raise self.error(
                    path,
                    f"{ref} predicts {self.predicts[ref]}, not energies and forces: this use needs an energy "
                    "model (a property model can be tested, or fine-tuned to a property)",
                )
            return
        stage, _, name = ref.partition(".")
        same_stage = [r.partition(".")[2] for r in self.models if r.startswith(f"{stage}.")]
        if same_stage and stage == "models":
            raise self.error(
                path, f"no model {name!r} declared under models: (declared: {known(same_stage)})"
            )
        if same_stage:
            raise self.error(path, f"no {stage} model named {name!r} ({stage} models: {known(same_stage)})")
        if ref.endswith((".pt", ".pth")):
            raise self.error(
                path,
                f"{ref!r} is not a model of this spec; to use a model file, declare it under models: "
                f"(e.g. models: {{mine: {{file: {ref}}}}}) and use models.mine",
            )
        hint = difflib.get_close_matches(ref, list(self.models), n=1)
        extra = f"; did you mean {hint[0]!r}?" if hint else ""
        raise self.error(path, f"unknown model {ref!r} (models of this spec: {known(self.models)}{extra})")

    def provide_model(self, path: str, ref: str, descriptor: dict[str, Any] | None = None) -> None:
        if ref in self.models:
            raise self.error(path, f"model {ref!r} is already defined at {self.models[ref]}")
        self.models[ref] = path
        self.descriptors[ref] = descriptor

    def part(self, name: str, role: str) -> str:
        """The dataset a stage reads for ``role`` ('train' or 'test'): a split dataset's part, else itself."""
        split = getattr(self.datasets.get(name), "split", None)
        return f"{name}@{role}" if split is not None else name

    def has_checkpoint(self, ref: str) -> bool:
        """Whether a training checkpoint stands behind a model reference (what fine-tuning starts from)."""
        return ref.partition(".")[0] in TRAINED_STAGES or ref in self.checkpoints

    def need_elements(self, path: str, ref: str, dataset: str) -> None:
        """A model whose element list is known covers every element of ``dataset``."""
        type_map = self.type_maps.get(ref)
        if type_map is None or self.data is None:
            return
        missing = self.missing_elements(ref, dataset)
        if missing:
            how = (
                f"fine-tune it on data holding them first (stages.finetune with from.model: {ref}; "
                "DeePMD-kit starts the added elements from random parameters) and test that, or "
                if ref in self.checkpoints
                else ""
            )
            raise self.error(
                path,
                f"{ref} knows only {', '.join(type_map)}: {dataset!r} has {', '.join(missing)} outside "
                f"its type map, so it cannot predict them; {how}pretrain with data holding them",
            )

    def missing_elements(self, ref: str, dataset: str) -> list[str]:
        """Elements of ``dataset`` outside a model's type map, where the type map is known."""
        type_map = self.type_maps.get(ref)
        if type_map is None or self.data is None:
            return []
        return sorted(self.data.elements(dataset) - set(type_map))

    def notice_sel(self, path: str, descriptor: dict[str, Any] | None, datasets: list[str]) -> None:
        """A notice where the descriptor's neighbour lists keep fewer atoms than the training data have
        within the cut-off (DeePMD-kit keeps the nearest, drops the rest and warns only in its log)."""
        if self.data is None:
            return
        short = sel_shortfalls(descriptor, self.data, datasets)
        if not short:
            return
        notice = (
            f"{path}: {'; '.join(short)} ({known(datasets)}): DeePMD-kit keeps the nearest atoms and drops "
            "the rest, so the model sees less than the data hold; raise it under model.descriptor "
            "(`dp neighbor-stat` counts every frame)"
        )
        if notice not in self.notices:
            self.notices.append(notice)

    def training_overlap(self, ref: str, dataset: str) -> tuple[str, str, str] | None:
        """(training dataset, its YAML path, why) of the first of ``ref``'s training data that shares frames
        with ``dataset``, or None."""
        assert self.data is not None
        for trained, where in self.trained_on.get(ref, {}).items():
            reason = self.data.overlap(dataset, trained)
            if reason is not None:
                return trained, where, reason
        return None

    def overlap_error(
        self, path: str, what: str, dataset: str, shared: tuple[str, str, str], owner: str, advice: str
    ) -> SpecError:
        """The one-line refusal of evaluation data that shares frames with training data:
        ``shared`` is what :meth:`training_overlap` found, ``owner`` the model(s) that trained on it."""
        trained, where, reason = shared
        return self.error(
            path,
            f"{what} {dataset!r} shares frames with {trained!r}, training data of {owner} ({where}): "
            f"{reason}; {advice}",
        )

    def learned_elements(self, ref: str) -> set[str] | None:
        """Elements the model's training data held (None when not known: a model from outside the spec)."""
        if ref not in self.learned_from or self.data is None:
            return None
        return {e for name in self.learned_from[ref] for e in self.data.elements(name)}

    def flag_unlearned(self, path: str, ref: str, dataset: str) -> None:
        """Elements of ``dataset`` that the model's type map names (the spec's type map is the union of all
        its datasets') but its training data never held: a notice now, a mark on the result row later."""
        learned = self.learned_elements(ref)
        if learned is None or self.data is None:
            return
        missing = tuple(sorted(self.data.elements(dataset) - learned))
        if not missing or (ref, dataset) in self.unlearned:
            return
        self.unlearned[(ref, dataset)] = missing
        self.notices.append(
            f"{path}: {ref} never learned {', '.join(missing)} (its training data "
            f"{known(sorted(self.learned_from[ref]))} hold none; its type map names them only because the "
            f"spec's type map is the union of all datasets'): its results on {dataset!r} are those of an "
            "untrained model for them, and are marked so"
        )

    def spec_descriptor(self) -> dict[str, Any] | None:
        """The descriptor of the models this spec trains from its ``model:`` section."""
        return None if self.model is None else architecture(self.model)[0]

    def claim_name(self, stage: str, names: dict[str, int], name: str, index: int) -> None:
        """``stages.<stage>[index].name`` must not repeat an earlier entry's (``names``: name -> index)."""
        if name in names:
            raise self.error(
                f"stages.{stage}[{index}].name",
                f"duplicate {stage} name {name!r} (also stages.{stage}[{names[name]}])",
            )
        names[name] = index

    def unique_slugs(self, kind: str, path: str, names: Iterable[str]) -> None:
        """Names that become step keys must stay distinct once kebab-cased."""
        seen: dict[str, str] = {}
        for name in names:
            key = slug(name)
            if key in seen:
                raise self.error(
                    path, f"{kind} names {seen[key]!r} and {name!r} give the same step key {key!r}"
                )
            seen[key] = name

    def resolve_file(self, path: Path) -> Path:
        return path if path.is_absolute() else (self.base_dir / path).resolve()


@dataclass
class PlanContext:
    """The growing plan: what stages read (model, type map, dataset formats) and add (steps, models)."""

    shown: str
    base_dir: Path
    model: ModelSpec
    type_map: list[str]
    dataset_formats: Mapping[str, DatasetFormat]
    # model reference -> frozen model / training checkpoint: a step's output, or a file (models: of the spec)
    models: dict[str, StepOutput | LocalFile] = field(default_factory=dict)
    checkpoints: dict[str, StepOutput | LocalFile] = field(default_factory=dict)
    steps: list[StepPlan] = field(default_factory=list)
    origins: dict[str, str] = field(default_factory=dict)  # step key -> YAML path that asked for it
    overlaps: frozenset[tuple[str, str]] = (
        frozenset()
    )  # (model, dataset) allowed to overlap its training data
    dataset_info: Mapping[str, DatasetInfo] = field(default_factory=dict)  # systems and frames per dataset
    splits: frozenset[str] = frozenset()  # datasets split into <name>@train and <name>@test
    notices: list[str] = field(default_factory=list)  # what the plan tells the user (not errors)
    branches: dict[str, str] = field(
        default_factory=dict
    )  # model reference -> the head of its checkpoint to fine-tune from ('' for a single-task one)
    unlearned: Mapping[tuple[str, str], tuple[str, ...]] = field(
        default_factory=dict
    )  # (model, dataset) -> elements of the dataset the model never trained on
    teachers: dict[str, tuple[str, ArtifactSource]] = field(
        default_factory=dict
    )  # distill model reference -> (teacher's name for people, teacher model source)
    loops: list[LoopPlan] = field(default_factory=list)  # loops decided at run time (stage active)
    properties: Mapping[str, Mapping[str, PropertySpec]] = field(
        default_factory=dict
    )  # dataset -> the properties it declares
    predicts: dict[str, str] = field(default_factory=dict)  # property model -> its property

    def declared_property(
        self, prop: str | None, dataset: str
    ) -> tuple[PropertyTarget | None, tuple[str, ...]]:
        """Property ``prop`` as ``dataset`` (its name in the spec) declares it, and its component names;
        (None, ()) for energies (``prop`` None)."""
        if prop is None:
            return None, ()
        declared = self.properties[dataset][prop]
        target = PropertyTarget(name=prop, dim=declared.dim, intensive=declared.intensive)
        return target, tuple(declared.component_names(prop))

    def property_target(self, ref: str, dataset: str) -> tuple[PropertyTarget | None, tuple[str, ...]]:
        """What a test of ``ref`` on ``dataset`` reads: :meth:`declared_property` of the property the model
        predicts; (None, ()) for an energy model."""
        return self.declared_property(self.predicts.get(ref), dataset)

    def part(self, name: str, role: str) -> str:
        """The dataset a step reads for ``role`` ('train' or 'test'): a split dataset's part, else itself."""
        return f"{name}@{role}" if name in self.splits else name

    def fit_virials(self, loss: dict[str, Any], spec_loss: Any, train: Iterable[str], where: str) -> None:
        """Labels used as they exist: when every training system has virials and the spec sets neither
        virial prefactor, ``loss`` fits them with VIRIAL_PREFS (a notice says so); 0 in the spec opts out."""
        if spec_loss.start_pref_v is not None or spec_loss.limit_pref_v is not None:
            return
        names = list(train)
        systems = [s for n in names for s in self.dataset_info[n].systems]
        if systems and all("virial" in s.arrays for s in systems):
            loss.update(VIRIAL_PREFS)
            self.notices.append(
                f"{where}: every training system of {', '.join(names)} has virials: the loss fits them "
                f"(start_pref_v {VIRIAL_PREFS['start_pref_v']}, limit_pref_v {VIRIAL_PREFS['limit_pref_v']}; "
                f"set {where}.training.loss.start_pref_v/limit_pref_v to 0 to leave them out)"
            )

    def finetune_source(self, ref: str) -> tuple[ArtifactSource, str]:
        """(training checkpoint, head to start from) of a model reference with a checkpoint."""
        stage, _, name = ref.partition(".")
        if stage == "pretrain":
            return self.checkpoints[CHECKPOINT_REF], name if len(pretrain_heads(self.models)) > 1 else ""
        return self.checkpoints[ref], self.branches.get(ref, "")

    def formats(self, names: Iterable[str]) -> dict[str, DatasetFormat]:
        return {n: self.dataset_formats[n] for n in names}

    def add(self, step: StepPlan, origin: str) -> StepPlan:
        """Add a step. The same step asked for twice (identical op, params and inputs) is kept once;
        two different steps with one key are an error naming both YAML paths."""
        for existing in self.steps:
            if existing.key != step.key:
                continue
            same = (existing.op, existing.params, existing.artifacts) == (
                step.op,
                step.params,
                step.artifacts,
            )
            if same:
                return existing
            raise SpecError(
                self.shown,
                origin,
                f"gives step key {step.key!r}, which {self.origins[step.key]} already gives to a different "
                "step; rename a dataset or model so the keys differ",
            )
        self.steps.append(step)
        self.origins[step.key] = origin
        return step

    def add_loop(self, loop: LoopPlan, origin: str) -> LoopPlan:
        """Add a loop decided at run time (its body's steps are added as iterations run)."""
        if loop.key in self.origins or any(other.key == loop.key for other in self.loops):
            raise SpecError(self.shown, origin, f"gives loop key {loop.key!r}, which is already taken")
        self.loops.append(loop)
        self.origins[loop.key] = origin
        return loop

    def resolve_file(self, path: Path) -> Path:
        return path if path.is_absolute() else (self.base_dir / path).resolve()


class Stage(Generic[SectionT]):
    """A stage of the spec. Subclasses set the class attributes and implement check/plan."""

    key: ClassVar[str]  # spec key under `stages:`; also the stage's module, op module and step-key prefix
    order: ClassVar[int]  # stages are checked and planned in this order (models flow forward)

    def check(self, section: SectionT, refs: References) -> None:
        raise NotImplementedError

    def guard(self, section: SectionT, refs: References) -> None:
        """Checks that need the inspected datasets (``refs.data``), run after every stage's ``check``."""

    def subsets(self, section: SectionT) -> Iterable[tuple[str, int, int]]:
        """(split dataset, frames, repeat) of the random train subsets the stage trains on; the loader writes
        them (after the guards) as datasets ``<name>@train-n<frames>-r<repeat>``."""
        return ()

    def plan(self, section: SectionT, ctx: PlanContext) -> None:
        raise NotImplementedError

    def yaml_path(self, *parts: str | int) -> str:
        out = f"stages.{self.key}"
        for part in parts:
            out += f"[{part}]" if isinstance(part, int) else f".{part}"
        return out
