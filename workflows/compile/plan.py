"""The plan: the DAG of typed steps a spec compiles to. Pure data: no I/O, no dflow.

A :class:`StepPlan` names its op class, carries that op's ``Params`` (built and validated by a stage) and
wires each of the op's input artifacts to a source: another step's output (:class:`StepOutput`, checked
against the producing op's ``Output``; :class:`ConvertedDatasets` when it is datasets the workflow
converted), a file the user gave (:class:`LocalFile`) or a bundle of spec datasets (:class:`DatasetBundle`).
Step keys are stable and readable (``pretrain``, ``freeze-<head>``, ``finetune-<name>``,
``change-bias-<model>-on-<dataset>``, ``test-<model>-on-<dataset>[...]``): a key names the same computation
in every run of the same spec.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from lamflow.ops.data.datasets import StagedDatasets
from lamflow.ops.runtime.contract import LamflowOP, OpModel, artifact_fields, required_artifacts


class PlanError(ValueError):
    """A stage wired a step inconsistently with its op's contract (a bug in lamflow, not bad input)."""


@dataclass(frozen=True)
class StepOutput:
    """An output artifact of another step."""

    step: str
    name: str


@dataclass(frozen=True)
class ConvertedDatasets(StepOutput):
    """Datasets (``names``) a step reads from the ``{name: folder}`` output of the workflow's conversion step
    (raw DFT outputs converted in the workflow; compile/conversion.py)."""

    names: tuple[str, ...] = ()


@dataclass(frozen=True)
class LocalFile:
    """A file given by the user (e.g. an external checkpoint), staged by the engine."""

    path: Path


@dataclass(frozen=True)
class DatasetBundle:
    """Spec datasets staged together as one ``{name: directory}`` artifact."""

    names: tuple[str, ...]


@dataclass(frozen=True)
class Carried:
    """In a loop's body: an artifact one iteration hands to the next (:class:`CarriedArtifact`)."""

    name: str


@dataclass(frozen=True)
class IterationOutput(StepOutput):
    """In a loop's body: an output of another body step of the same iteration (``step``: its relative
    key)."""


@dataclass(frozen=True)
class LoopOutput(StepOutput):
    """An output of a loop (``step``: the loop's key): its last iteration's, known once the loop stopped."""


ArtifactSource = StepOutput | LocalFile | DatasetBundle | Carried


@dataclass(frozen=True)
class Evaluation:
    """What a step measures: a model of the spec (its reference) on a dataset; its output ``metrics``."""

    model: str
    dataset: str
    change_bias_on: str | None = None
    overlap: bool = False  # the spec allowed testing on data that shares frames with the training data
    study: str | None = None  # a transfer study's name; then protocol is one of
    protocol: str | None = None  # unshifted, zero-shot, finetune, scratch
    train_frames: int | None = None  # learning curves: the frames trained on ...
    repeat: int | None = None  # ... and which random subset of that size
    unlearned: tuple[str, ...] = ()  # elements of the dataset the model's training data never held
    property: str | None = None  # a property model's test: the property, and a name per component
    components: tuple[str, ...] = ()


@dataclass(frozen=True)
class Comparison:
    """What a step measures side by side: models by role (teacher, student, compressed) on one dataset;
    its output ``comparison`` holds {model reference: figures}."""

    dataset: str
    roles: tuple[tuple[str, str], ...]  # (role, model reference), in display order


@dataclass(frozen=True)
class StepPlan:
    key: str
    op: type[LamflowOP]
    params: OpModel
    summary: str  # one line for humans
    artifacts: dict[str, ArtifactSource] = field(default_factory=dict)
    model_ref: str | None = None  # the spec's name for the frozen model this step outputs as `model`
    checkpoint_ref: str | None = None  # ... and for the training checkpoint it outputs as `checkpoint`
    evaluation: Evaluation | None = None
    comparison: Comparison | None = None
    # declared by the stage: a quick `dp` call (freeze, change-bias, test) that may share a worker process
    # with other short steps (compile/groups.py); training steps own their process
    short: bool = False
    resource: str = "default"  # the kind of machine the step needs; groups never mix two kinds
    # on Argo: the container image of this step when not the steps' own (the command labeler's DFT code);
    # the local engine runs every step on this machine
    image: str | None = None

    def __post_init__(self) -> None:
        if type(self.params) is not self.op.Params:
            raise PlanError(
                f"{self.key}: params are {type(self.params).__name__}, {self.op.__name__} takes "
                f"{self.op.Params.__name__}"
            )
        declared = set(artifact_fields(self.op.Input))
        unknown = set(self.artifacts) - declared
        missing = required_artifacts(self.op.Input) - set(self.artifacts)
        if issubclass(self.op.Input, StagedDatasets) and not {"datasets", "converted"} & set(self.artifacts):
            missing.add("datasets")  # one of the two: staged, or converted by the workflow
        if unknown or missing:
            raise PlanError(
                f"{self.key}: artifacts {sorted(unknown)} unknown / {sorted(missing)} missing for "
                f"{self.op.__name__} (inputs: {sorted(declared)})"
            )
        if self.model_ref is not None and "model" not in artifact_fields(self.op.Output):
            raise PlanError(f"{self.key}: model_ref set but {self.op.__name__} outputs no `model`")

    def output(self, name: str) -> StepOutput:
        """A reference to one of this step's output artifacts (checked against the op's ``Output``)."""
        if name not in artifact_fields(self.op.Output):
            raise PlanError(
                f"{self.key}: {self.op.__name__} has no output artifact {name!r} "
                f"(outputs: {sorted(artifact_fields(self.op.Output))})"
            )
        return StepOutput(self.key, name)

    @property
    def depends(self) -> list[str]:
        return sorted({a.step for a in self.artifacts.values() if isinstance(a, StepOutput)})

    @property
    def datasets(self) -> tuple[str, ...]:
        return tuple(
            n
            for a in self.artifacts.values()
            if isinstance(a, DatasetBundle | ConvertedDatasets)
            for n in a.names
        )

    @property
    def parameters(self) -> dict[str, Any]:
        """The params as JSON-able data (what the step receives as dflow parameters)."""
        return self.params.model_dump(mode="json")


ITERATION = "iteration"  # a body step's parameter that the loop sets to the iteration (1-based)


def iteration_tag(iteration: int) -> str:
    """``i001``: the iteration as step keys carry it (sorted as text, they stay in order)."""
    return f"i{iteration:03d}"


def iteration_key(loop_key: str, iteration: int, relative: str) -> str:
    """The key of a loop's body step ``relative`` in one iteration: ``active-w-i003-train-1``."""
    return f"{loop_key}-{iteration_tag(iteration)}-{relative}"


@dataclass(frozen=True)
class CarriedArtifact:
    """What a loop carries: iteration 1 reads ``initial`` (None: the body's input is optional and left
    out), iteration n+1 reads ``following`` of iteration n (an output of a body step)."""

    initial: StepOutput | LocalFile | DatasetBundle | None
    following: IterationOutput


@dataclass(frozen=True)
class LoopPlan:
    """A loop decided at run time (the concurrent-learning stage): the same body of steps, iteration after
    iteration, until its ``decision`` step outputs ``stop``. Body steps have relative keys (``train-1``);
    iteration n's step keys are ``<key>-i<nnn>-<relative key>`` (compile/loops.py unrolls them). Body
    artifacts come from the same iteration's steps (:class:`IterationOutput`), from what the loop carries
    (:class:`Carried`), or from outside the loop (steps before it, datasets, files). A body step whose
    params have an ``iteration`` field gets the iteration there."""

    key: str
    summary: str
    body: tuple[StepPlan, ...]
    carried: dict[str, CarriedArtifact]
    decision: str  # relative key of the step whose output parameter `stop` ends the loop
    outputs: dict[str, IterationOutput]  # the loop's outputs: the last iteration's
    max_iterations: int
    position: int  # how many of the plan's steps come before the loop (its iterations are placed there)
    model_ref: str | None = None  # the spec's name for the loop's output `model` (and `checkpoint`)

    def body_step(self, key: str) -> StepPlan:
        return next(s for s in self.body if s.key == key)

    def body_key(self, iteration: int, relative: str) -> str:
        return iteration_key(self.key, iteration, relative)

    @property
    def outer_depends(self) -> list[str]:
        """Steps outside the loop that its body (or what it carries in) reads."""
        found = {
            a.step
            for s in self.body
            for a in s.artifacts.values()
            if isinstance(a, StepOutput) and not isinstance(a, IterationOutput)
        }
        found |= {c.initial.step for c in self.carried.values() if isinstance(c.initial, StepOutput)}
        return sorted(found)

    def check(self) -> None:
        """Body keys unique; iteration outputs name earlier body steps' outputs; carried names agree."""
        seen: dict[str, StepPlan] = {}
        for step in self.body:
            if step.key in seen:
                raise PlanError(f"{self.key}: duplicate body step {step.key!r}")
            for name, source in step.artifacts.items():
                if isinstance(source, IterationOutput):
                    if source.step not in seen:
                        raise PlanError(f"{self.key}.{step.key}.{name}: no earlier body step {source.step!r}")
                    seen[source.step].output(source.name)
                elif isinstance(source, Carried) and source.name not in self.carried:
                    raise PlanError(f"{self.key}.{step.key}.{name}: carries no {source.name!r}")
            seen[step.key] = step
        for name, source in [*((n, c.following) for n, c in self.carried.items()), *self.outputs.items()]:
            if source.step not in seen:
                raise PlanError(f"{self.key}: {name} from no body step {source.step!r}")
            seen[source.step].output(source.name)
        if self.decision not in seen or "stop" not in seen[self.decision].op.Output.model_fields:
            raise PlanError(f"{self.key}: decision step {self.decision!r} missing or outputs no `stop`")

    def record(self) -> dict[str, Any]:
        return {
            "key": self.key,
            "summary": self.summary,
            "max_iterations": self.max_iterations,
            "decision": self.decision,
            "carried": {
                n: {
                    "initial": None if c.initial is None else _source_record(c.initial),
                    "following": asdict(c.following),
                }
                for n, c in self.carried.items()
            },  # fmt: skip
            "outputs": {n: asdict(o) for n, o in self.outputs.items()},
            "body": [_step_record(s) for s in self.body],
        }


@dataclass(frozen=True)
class Plan:
    name: str
    steps: tuple[StepPlan, ...]  # dependencies come first
    dataset_paths: dict[str, Path]
    origins: dict[str, str] = field(default_factory=dict)  # step key -> YAML path of the spec entry
    notices: tuple[str, ...] = ()  # what the plan leaves unused in its data (compile/notices.py)
    groups: dict[str, tuple[str, ...]] = field(default_factory=dict)  # group name -> short step keys
    # the spec's `resources:` (a ResourcesSpec): what each step class asks of a Kubernetes node on Argo
    resources: Any = None
    # split datasets: name -> {system: {"train": [frame...], "test": [...]}} (recorded in plan.json)
    splits: dict[str, dict[str, dict[str, list[int]]]] = field(default_factory=dict)
    # learning-curve subsets: name -> {train-part system: [frame...]} (recorded in plan.json)
    subsets: dict[str, dict[str, list[int]]] = field(default_factory=dict)
    loops: tuple[LoopPlan, ...] = ()  # loops decided at run time (compile/loops.py unrolls them)

    def group_of(self, key: str) -> str | None:
        return next((name for name, keys in self.groups.items() if key in keys), None)

    def step(self, key: str) -> StepPlan:
        return next(s for s in self.steps if s.key == key)

    @property
    def evaluations(self) -> tuple[StepPlan, ...]:
        return tuple(s for s in self.steps if s.evaluation is not None)

    def check(self) -> None:
        """Every step output referenced exists on an earlier step; keys are unique."""
        seen: dict[str, StepPlan] = {}
        loops = {loop.key: loop for loop in self.loops}
        for loop in self.loops:
            loop.check()
        for n, step in enumerate(self.steps):
            if step.key in seen:
                raise PlanError(f"duplicate step key {step.key!r}")
            for name, source in step.artifacts.items():
                if isinstance(source, LoopOutput):
                    producing = loops.get(source.step)
                    if producing is None or producing.position > n or source.name not in producing.outputs:
                        raise PlanError(
                            f"{step.key}.{name}: no earlier loop output {source.step}.{source.name}"
                        )
                elif isinstance(source, Carried | IterationOutput):
                    raise PlanError(f"{step.key}.{name}: a loop body's source outside a loop")
                elif isinstance(source, StepOutput):
                    producer = seen.get(source.step)
                    if producer is None:
                        raise PlanError(f"{step.key}.{name}: no earlier step {source.step!r}")
                    producer.output(source.name)
                if isinstance(source, DatasetBundle | ConvertedDatasets):
                    missing = [n for n in source.names if n not in self.dataset_paths]
                    if missing:
                        raise PlanError(f"{step.key}.{name}: unknown datasets {missing}")
            seen[step.key] = step

    def record(self) -> dict[str, Any]:
        """The plan as written to ``plan.json`` (and the golden files)."""
        return {
            "name": self.name,
            "steps": [_step_record(s) for s in self.steps],
            **({"loops": [loop.record() for loop in self.loops]} if self.loops else {}),
            "groups": {name: list(keys) for name, keys in self.groups.items()},
            **({"splits": self.splits} if self.splits else {}),
            **({"subsets": self.subsets} if self.subsets else {}),
        }


def _step_record(s: StepPlan) -> dict[str, Any]:
    return {
        "key": s.key,
        "op": s.op.name,
        "summary": s.summary,
        "depends": s.depends,
        "datasets": list(s.datasets),
        "artifacts": {
            k: _source_record(v) for k, v in s.artifacts.items() if not isinstance(v, DatasetBundle)
        },
        "parameters": s.parameters,
        **({"image": s.image} if s.image is not None else {}),
    }


def _source_record(source: ArtifactSource) -> dict[str, Any]:
    if isinstance(source, Carried):
        return {"carried": source.name}
    if isinstance(source, IterationOutput | LoopOutput):
        kind = "iteration_step" if isinstance(source, IterationOutput) else "loop"
        return {kind: source.step, "name": source.name}
    if isinstance(source, ConvertedDatasets):
        return {"step": source.step, "name": source.name, "names": list(source.names)}
    if isinstance(source, StepOutput):
        return asdict(source)
    if isinstance(source, LocalFile):
        return {"file": str(source.path)}
    return {"datasets": list(source.names)}
