"""Benchmark: compile and render a spec with a large test fan-out as an Argo Workflow.

    .venv/bin/python bench/render_fanout.py [--tasks 1000] [--rounds 3]

The spec is the demo pipeline (pretrain, fine-tune) plus a test group of the fine-tuned model on N test
sets (N copies of the bundled GeTe test frames under N names): N + 5 DAG tasks. Timed, in this process
after one warm-up: `validate` (load, dataset checks, compile, DeePMD-kit input check), `render` of the
compiled plan to the Workflow, and the YAML dump (what `lamflow render` writes); the manifest's
size is measured on the YAML. The baseline in the same run is the demo spec (9 tasks): the ratio per
task shows how rendering scales.
Goal (issue 10): < 2 s for N = 1,000 and a manifest < 1 MiB (Argo's request limit is 3 MiB, etcd's
object limit ~1.5 MB). Results go to bench/results/render_fanout.json.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import shutil
import statistics
import tempfile
import time
from pathlib import Path

import yaml

from lamflow.workflows import api
from lamflow.workflows.argo.render import SpecIdentity, render, to_yaml
from lamflow.workflows.settings import Settings

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
DATA = REPO / "examples" / "data"


def fanout_spec(root: Path, n: int) -> Path:
    spec = yaml.safe_load((REPO / "examples" / "demo.yaml").read_text())
    for entry in spec["datasets"].values():
        entry["path"] = str(DATA / Path(entry["path"]).relative_to("data"))
    names = [f"t{i:04d}" for i in range(n)]
    for name in names:
        shutil.copytree(DATA / "gete" / "test", root / name)
        spec["datasets"][name] = {"path": str(root / name)}
    spec["stages"]["test"] = [{"models": ["finetune.gete"], "datasets": names}]
    spec.pop("registry", None)
    path = root / "fanout.yaml"
    path.write_text(yaml.safe_dump(spec, sort_keys=False))
    return path


def measure(spec: Path, settings: Settings, rounds: int) -> dict[str, float]:
    identity = SpecIdentity("fanout", "", hashlib.sha256(spec.read_bytes()).hexdigest())
    timings: dict[str, list[float]] = {"validate_s": [], "render_s": [], "dump_s": []}
    size = tasks = 0
    for i in range(rounds + 1):
        t0 = time.perf_counter()
        resolved, plan = api.validate(spec, settings)
        t1 = time.perf_counter()
        manifest = render(plan, resolved.spec.resources, settings, identity)
        t2 = time.perf_counter()
        text = to_yaml(manifest)
        t3 = time.perf_counter()
        if i == 0:  # warm-up (imports, DeePMD-kit's argument checker)
            continue
        timings["validate_s"].append(t1 - t0)
        timings["render_s"].append(t2 - t1)
        timings["dump_s"].append(t3 - t2)
        size, tasks = len(text.encode()), len(plan.steps)
    result = {key: statistics.median(values) for key, values in timings.items()}
    result["total_s"] = result["validate_s"] + result["render_s"] + result["dump_s"]
    result.update(tasks=tasks, manifest_bytes=size)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", type=int, default=1000)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    settings = Settings(image="lamflow-ops:bench", store_prefix="lamflow")
    baseline = measure(REPO / "examples" / "demo.yaml", settings, args.rounds)
    with tempfile.TemporaryDirectory(prefix="lamflow-fanout-") as tmp:
        fanout = measure(fanout_spec(Path(tmp), args.tasks), settings, args.rounds)
    per_task = {
        "baseline_ms_per_task": 1000 * baseline["total_s"] / baseline["tasks"],
        "fanout_ms_per_task": 1000 * fanout["total_s"] / fanout["tasks"],
    }
    per_task["ratio_per_task"] = per_task["fanout_ms_per_task"] / per_task["baseline_ms_per_task"]
    report = {"baseline_demo": baseline, "fanout": fanout, **per_task}
    report["goal_met"] = fanout["total_s"] < 2.0 and fanout["manifest_bytes"] < 2**20
    out = HERE / "results" / "render_fanout.json"
    out.parent.mkdir(exist_ok=True)
    out.write_text(json.dumps(report, indent=2) + "\n")
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
