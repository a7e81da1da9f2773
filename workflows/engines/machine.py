"""This machine, as the local engine hands it out: its GPUs and cores, and what each step of a plan needs.

- :func:`detect` finds the GPUs (``CUDA_VISIBLE_DEVICES`` where it is set, otherwise the NVIDIA driver's
  ``/proc/driver/nvidia/gpus``; no torch import) and the cores this process may run on; the settings
  ``LAMFLOW_LOCAL_GPUS`` / ``LAMFLOW_LOCAL_CORES`` override both (what the tests use to fake a machine).
- :func:`needs_of` gives each step its share: a training step (resource class ``pretrain`` or
  ``finetune``) takes the spec's ``resources.<class>.gpus`` where set, otherwise
  ``LAMFLOW_LOCAL_TRAIN_GPUS`` (default: 1 where there are GPUs), and ``LAMFLOW_LOCAL_TRAIN_CORES``; every
  other step takes ``LAMFLOW_LOCAL_STEP_GPUS`` (default 0) and ``LAMFLOW_LOCAL_STEP_CORES`` (default 1).
  On a machine without GPUs every step runs on its cores, as before. A training step with
  ``resources.<class>.nodes: N`` holds N times its GPUs and starts N torchrun "nodes" here
  (``LAMFLOW_NNODES``, ops/training/distributed.py).
- :func:`pool_size` is how many steps dflow may start at once; the slots (``ops/runtime/slots.py``) decide
  which of them run.

The default cores of a training step: with ``LAMFLOW_LOCAL_WORKERS=1`` (one step at a time) all of them;
with GPUs, the cores split evenly between the GPUs; without, half the cores and at most 4 (measured on this
project's 2-core VM: a small DeePMD-kit model trains about as fast on 1 thread as on 2, so two trainings side
by side finish in about half the time, bench/README.md).
"""

from __future__ import annotations

import os
from pathlib import Path

from lamflow.ops.dp import NNODES_ENV, visible_gpus
from lamflow.ops.runtime.slots import (
    KEY_ENV,
    NEEDS_ENV,
    POOL_ENV,
    Machine,
    Needs,
    holding_now,
    read_grant,
    read_grants,
)
from lamflow.workflows.compile.plan import Plan, StepPlan
from lamflow.workflows.engines.summary import Slot
from lamflow.workflows.errors import UsageError
from lamflow.workflows.settings import Settings
from lamflow.workflows.spec.resources import TRAINING_CLASSES

SLOTS_DIR = "slots"  # in a run directory: the run's GPUs and cores as lock files (ops/runtime/slots.py)
MAX_POOL = 32  # dflow forks one process per concurrent step; more than this is never useful here
CPU_TRAIN_CORES = 4  # a CPU-only training step's default share at most (DeePMD-kit scales poorly past it)


def detect(settings: Settings, environ: dict[str, str] | None = None) -> Machine:
    """The GPUs and cores local runs may use."""
    env = dict(os.environ if environ is None else environ)
    gpus = visible_gpus(env)
    if settings.local_gpus is not None:
        wanted = settings.local_gpus
        gpus = gpus[:wanted] + [str(i) for i in range(len(gpus), wanted)]
    real = sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else []
    cores = real or list(range(os.cpu_count() or 1))
    if settings.local_cores is not None:
        wanted = settings.local_cores
        cores = cores[:wanted] + [max(cores) + 1 + i for i in range(wanted - len(cores))]
    return Machine(gpus=tuple(gpus), cores=tuple(cores))


def is_training(step: StepPlan) -> bool:
    return step.resource in TRAINING_CLASSES


def train_cores(settings: Settings, machine: Machine) -> int:
    if settings.local_train_cores is not None:
        return min(settings.local_train_cores, len(machine.cores))
    if settings.local_workers == 1:
        return len(machine.cores)
    if machine.gpus:
        return max(1, len(machine.cores) // len(machine.gpus))
    return max(1, min(CPU_TRAIN_CORES, len(machine.cores) // 2))


def needs_of(step: StepPlan, plan: Plan, settings: Settings, machine: Machine) -> Needs:
    """What ``step`` holds while it runs on ``machine``."""
    if not is_training(step):
        gpus = settings.local_step_gpus if machine.gpus else 0
        return Needs(gpus=gpus, cores=min(settings.local_step_cores, len(machine.cores)))
    asked = _spec_gpus(step, plan)
    if not machine.gpus:
        gpus = 0  # a machine without GPUs trains on its cores, whatever a cluster spec asks
    elif asked is not None:
        gpus = asked
    elif settings.local_train_gpus is not None:
        gpus = settings.local_train_gpus
    else:
        gpus = 1
    return Needs(gpus=gpus * nodes_of(step, plan), cores=train_cores(settings, machine))


def nodes_of(step: StepPlan, plan: Plan) -> int:
    """The nodes a training step asks for (``resources.<class>.nodes``; 1 for every other step)."""
    if plan.resources is None or not is_training(step):
        return 1
    return plan.resources.for_class(step.resource)[1].nodes or 1


def _spec_gpus(step: StepPlan, plan: Plan) -> int | None:
    if plan.resources is None:
        return None
    _, profile = plan.resources.for_class(step.resource)
    gpus = profile.gpus
    return None if gpus is None else int(gpus)


def all_steps(plan: Plan) -> list[StepPlan]:
    """The plan's steps and its loops' body steps (each iteration runs a copy of them)."""
    return [*plan.steps, *(step for loop in plan.loops for step in loop.body)]


def check_fits(plan: Plan, settings: Settings, machine: Machine) -> None:
    """Refuse, in one line, a plan with a step this machine can never run."""
    for step in all_steps(plan):
        needs = needs_of(step, plan, settings, machine)
        if needs.gpus <= len(machine.gpus):
            continue
        where = (
            plan.resources.for_class(step.resource)[0] + ".gpus"
            if _spec_gpus(step, plan) is not None
            else ("LAMFLOW_LOCAL_TRAIN_GPUS" if is_training(step) else "LAMFLOW_LOCAL_STEP_GPUS")
        )
        raise UsageError(
            f"{where}: step {step.key} asks for {needs.gpus} GPU(s), but this machine has "
            f"{len(machine.gpus)} (CUDA_VISIBLE_DEVICES or LAMFLOW_LOCAL_GPUS); ask for fewer or run on Argo"
        )


def pool_size(settings: Settings, machine: Machine) -> int:
    """How many steps dflow may start at once (each waits for its slot before it works)."""
    if settings.local_workers is not None:
        return settings.local_workers
    fewest = min(settings.local_step_cores, train_cores(settings, machine))  # every step holds >= 1 core
    return max(1, min(MAX_POOL, len(machine.cores) // fewest))


def step_environment(pool: Path, key: str, needs: Needs, nodes: int = 1) -> dict[str, str]:
    """The variables a step's process starts with: where the run's slots are, its key, what it needs, and
    for a training step on more than one node, how many torchrun "nodes" it starts here."""
    variables = {POOL_ENV: str(pool), KEY_ENV: key, NEEDS_ENV: str(needs)}
    if nodes > 1:
        variables[NNODES_ENV] = str(nodes)
    return variables


def _slot(grant: dict[str, object]) -> Slot:
    return Slot(
        gpus=[str(g) for g in grant.get("gpus") or []],  # type: ignore[attr-defined]
        cores=len(grant.get("cores") or []),  # type: ignore[arg-type]
        waited_s=float(grant.get("waited_s") or 0.0),  # type: ignore[arg-type]
    )


def ran_on(run_dir: Path, key: str) -> Slot | None:
    """What a step held (None: it never got a slot: cached, on Argo, or failed before its op started)."""
    grant = read_grant(run_dir / SLOTS_DIR, key)  # one file: called as each step ends
    return None if grant is None else _slot(grant)


def held_now(run_dir: Path) -> dict[str, Slot]:
    """Step key -> what it holds, for the steps of a local run that hold a slot right now."""
    return {key: _slot(g) for key, g in read_grants(run_dir / SLOTS_DIR).items() if holding_now(g)}
