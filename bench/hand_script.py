"""The baseline of the local-overhead benchmark: a bash script that runs a plan's `dp` commands by hand.

It is what a person would type for the same work: one directory per step, the same DeePMD-kit inputs
(built by lamflow's own code, with the systems of the original dataset paths) and the same `dp --pt`
argument lists (built by lamflow.ops.dp), run one after another. Each step prints its wall time.
"""

from __future__ import annotations

import json
import shlex
from pathlib import Path

from lamflow.ops.dp import change_bias_command, freeze_command, test_command, train_command
from lamflow.ops.runtime import files
from lamflow.ops.training.common import fill_systems
from lamflow.workflows.compile.plan import DatasetBundle, Plan, StepOutput

OUTPUT_FILES = {"checkpoint": files.CHECKPOINT, "model": files.FROZEN_MODEL}


def _source(step_dir: Path, plan: Plan, source: StepOutput) -> str:
    return str(step_dir.parent / source.step / OUTPUT_FILES[source.name])


def write_script(plan: Plan, root: Path) -> Path:
    """Write ``root/<step>/input.json`` files and ``root/run.sh``; returns the script's path."""
    lines = ["#!/usr/bin/env bash", "set -euo pipefail", f"cd {shlex.quote(str(root))}"]
    for step in plan.steps:
        here = root / step.key
        here.mkdir(parents=True)
        params = step.parameters
        for source in step.artifacts.values():
            if isinstance(source, DatasetBundle):
                for dataset in source.names:
                    if params["dataset_formats"][dataset].get("type_map"):
                        raise SystemExit(
                            f"{dataset}: datasets with an explicit type_map are not supported here"
                        )
        datasets = {
            n: plan.dataset_paths[n]
            for a in step.artifacts.values()
            if isinstance(a, DatasetBundle)
            for n in a.names
        }
        commands: list[list[str]] = []
        if step.op.name in ("pretrain", "finetune"):
            from lamflow.ops.data.datasets import DatasetFormat
            from lamflow.ops.training.common import HeadData

            filled = fill_systems(
                params["deepmd_input"],
                {h: HeadData(**d) for h, d in params["head_datasets"].items()},
                datasets,
                {n: DatasetFormat(**f) for n, f in params["dataset_formats"].items()},
                here / "systems",
            )
            (here / files.INPUT_JSON).write_text(json.dumps(filled, indent=2))
            if step.op.name == "pretrain":
                commands.append(train_command(files.INPUT_JSON))
            else:
                base = step.artifacts["base_checkpoint"]
                assert isinstance(base, StepOutput)
                commands.append(
                    train_command(
                        files.INPUT_JSON,
                        finetune=_source(here, plan, base),
                        model_branch=params["model_branch"] or None,
                        use_pretrain_script=True,
                    )
                )
                commands.append(freeze_command(files.FROZEN_MODEL))
        elif step.op.name == "freeze":
            checkpoint = step.artifacts["checkpoint"]
            assert isinstance(checkpoint, StepOutput)
            commands.append(
                freeze_command(
                    files.FROZEN_MODEL,
                    checkpoint_dir=here.parent / checkpoint.step,
                    head=params["head"] or None,
                )
            )
        elif step.op.name in ("change-bias", "test"):
            model = step.artifacts["model"]
            assert isinstance(model, StepOutput)
            data = str(datasets[params["dataset"]])
            if step.op.name == "change-bias":
                commands.append(
                    change_bias_command(
                        _source(here, plan, model), data, output=files.FROZEN_MODEL, mode=params["mode"]
                    )
                )
            else:
                (here / "detail").mkdir()
                commands.append(
                    test_command(
                        _source(here, plan, model),
                        data,
                        numb_test=params["frames"],
                        detail_prefix="detail/detail",
                    )
                )
        else:
            raise SystemExit(f"{step.key}: op {step.op.name!r} has no hand-run equivalent here yet")
        lines.append(f"cd {shlex.quote(str(here))}; t0=${{EPOCHREALTIME/./}}")
        for argv in commands:
            lines.append(f"{shlex.join(argv)} >> dp.log 2>&1")
        lines.append(f'echo "STEP {step.key} $(( ${{EPOCHREALTIME/./}} - t0 ))"')  # microseconds
    script = root / "run.sh"
    script.write_text("\n".join(lines) + "\n")
    return script
