"""A step group in one pod (Argo): the group's short steps run one after another in this process.

The Argo renderer gives a group's template one parameter, ``steps`` — per step its key, op, parameters,
and where each input artifact comes from (an input artifact of the group, or an earlier step of the
group) — and one input artifact per outside source. :func:`run_group` runs the steps in order as the
local step worker does: each in a directory of its own, ``dp`` called in-process through DeePMD-kit's
entry point, process state put back after each step (:class:`lamflow.ops.runtime.worker.Isolation`). Each step
stays a unit: its outputs become the group's output artifacts ``<step>--<output>`` (laid out as dflow
lays out outputs, so that dflow steps downstream read them), its ``metrics`` the output parameter
``<step>--metrics``, and its phase and error go into the output parameter ``phases``. A failing step
fails itself and the group steps that need its outputs; the others still run. The pod exits 1 when a
step failed, so the workflow fails as a local run would.
"""

from __future__ import annotations

import importlib
import json
import os
import sys
import traceback
from pathlib import Path
from typing import Any

from dflow.python import OPIO

from lamflow.ops import dp
from lamflow.ops.runtime.files import catalog_output, resolve_input

ROOT = Path("/tmp")


def output_name(step: str, output: str) -> str:
    """The group's name for a step's output (artifact or parameter)."""
    return f"{step}--{output}"


def _op(reference: str) -> Any:
    module, _, name = reference.partition(":")
    return getattr(importlib.import_module(module), name)


def run_group(steps: list[dict[str, Any]], root: Path = ROOT) -> int:
    """Run the group's steps; returns the exit status of the pod (0 when every step succeeded)."""
    from lamflow.ops.runtime.worker import Isolation, warm_up

    dp.IN_WORKER = True
    warm_up(deepmd=dp.real_dp())
    baseline = Isolation.capture()
    phases: dict[str, dict[str, Any]] = {}
    produced: dict[str, dict[str, Path]] = {}
    parameters = root / "outputs" / "parameters"
    parameters.mkdir(parents=True, exist_ok=True)
    for step in steps:
        key = step["key"]
        needs = {source["step"] for source in step["artifacts"].values() if "step" in source}
        missing = sorted(d for d in needs if phases.get(d, {}).get("phase") != "Succeeded")
        if missing:
            phases[key] = {"phase": "Skipped", "error": f"needs {', '.join(missing)}, which did not succeed"}
            continue
        print(f"lamflow group: {key}", flush=True)
        work = root / "group" / key
        work.mkdir(parents=True, exist_ok=True)
        try:
            os.chdir(work)
            artifacts = {
                name: (
                    produced[source["step"]][source["output"]]
                    if "step" in source
                    else resolve_input(root / "inputs" / "artifacts" / source["input"])
                )
                for name, source in step["artifacts"].items()
            }
            op = _op(step["op"])
            out = op().execute(OPIO({**step["params"], **artifacts}))
            produced[key] = {}
            for name in step["outputs"]:
                folder = root / "outputs" / "artifacts" / output_name(key, name)
                produced[key][name] = catalog_output(Path(out[name]), folder)
            if "metrics" in out:
                (parameters / output_name(key, "metrics")).write_text(json.dumps(out["metrics"]))
            phases[key] = {"phase": "Succeeded"}
        except Exception as error:  # the step fails alone, with its message
            traceback.print_exc()
            first = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
            phases[key] = {"phase": "Failed", "error": first[:2000]}
        finally:
            baseline.restore()
    (parameters / "phases").write_text(json.dumps(phases))
    return 1 if any(p["phase"] != "Succeeded" for p in phases.values()) else 0


def main(steps_json: str) -> None:
    sys.exit(run_group(json.loads(steps_json)))
