"""Benchmark: a test matrix (models x datasets) with and without step groups, and the per-step overhead
of a grouped short step beyond DeePMD-kit's own work.

    .venv/bin/python bench/step_groups.py [--sizes 1 2 4]

For each size N: a spec with an N-head pretraining (N frozen models) and a test matrix of the N models on
N test sets (copies of the bundled GeTe test frames under N names) is run once to fill a fresh step cache.
Then, for grouped and ungrouped runs alike, the stored results of the short steps (freeze, test) are
evicted and the spec is submitted again: training comes from the cache, every short step runs. Reported:
wall time of each run and their ratio. For the largest size, each grouped test step's duration is
compared with the same `dp --pt test` argument list run through `deepmd.main.main` in this process
(warmed up first): the difference is lamflow's overhead per grouped step. Results go to
bench/results/step_groups.json.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
DATA = REPO / "examples" / "data"
LAMFLOW = Path(sys.executable).with_name("lamflow")


def matrix_spec(n: int) -> dict:
    heads = {f"h{i}": {"datasets": ["gete"]} for i in range(1, n + 1)}
    tests = {f"t{i}": {"path": str(DATA / "gete" / "test")} for i in range(1, n + 1)}
    return {
        "name": f"matrix-{n}x{n}",
        "datasets": {"gete": {"path": str(DATA / "gete" / "train")}, **tests},
        "model": {"preset": "dpa2-tiny"},
        "stages": {
            "pretrain": {"heads": heads, "training": {"steps": 10}},
            "test": [{"models": [f"pretrain.h{i}" for i in range(1, n + 1)], "datasets": list(tests)}],
        },
    }


def submit(spec: Path, run_dir: Path, env: dict[str, str], *extra: str) -> tuple[float, dict]:
    started = time.monotonic()
    out = subprocess.run(
        [str(LAMFLOW), "submit", str(spec), "--run-dir", str(run_dir), "--output", "json", *extra],
        env=env, capture_output=True, text=True,
    )  # fmt: skip
    wall = time.monotonic() - started
    if out.returncode != 0:
        raise SystemExit(f"{spec.name}: lamflow submit failed:\n{out.stderr[-2000:]}{out.stdout[-2000:]}")
    return wall, json.loads(out.stdout)


def evict_short_steps(store: Path, summary: dict) -> None:
    for record in summary["steps"].values():
        if record["op"] in ("freeze", "test", "change-bias"):
            shutil.rmtree(store / "steps" / record["cache_key"], ignore_errors=True)


def dp_test_in_process(run_dir: Path, summary: dict) -> dict[str, float]:
    """Each test step's `dp --pt test` argument list, run here through DeePMD-kit's entry point."""
    from deepmd.main import main as deepmd_main

    times = {}
    for key, record in summary["steps"].items():
        if record["op"] != "test":
            continue
        log = (run_dir / record["outputs"]["log"]).read_text()
        argv = shlex.split(next(x for x in log.splitlines() if x.startswith("$ "))[2:])
        args = argv[argv.index("--pt") :]
        work = (run_dir / record["outputs"]["log"]).parent
        (work / "detail").mkdir(exist_ok=True)  # the step's own detail folder moved to its outputs
        here = os.getcwd()
        os.chdir(work)
        try:
            started = time.monotonic()
            deepmd_main(args)
            times[key] = time.monotonic() - started
        finally:
            os.chdir(here)
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[1, 2, 4])
    parser.add_argument(
        "--grouped-only", action="store_true", help="skip the ungrouped runs (only the per-step overhead)"
    )
    args = parser.parse_args()
    results: dict = {"sizes": {}}
    with tempfile.TemporaryDirectory(prefix="lamflow-bench-groups-") as tmp:
        root = Path(tmp)
        for n in args.sizes:
            spec = root / f"matrix-{n}.yaml"
            spec.write_text(yaml.safe_dump(matrix_spec(n), sort_keys=False))
            store = root / f"store-{n}"
            env = {**os.environ, "LAMFLOW_STORE": str(store)}
            env.pop("LAMFLOW_DP", None)
            _, first = submit(spec, root / f"fill-{n}", env)  # trains once; fills the cache
            row = {"short_steps": sum(r["op"] in ("freeze", "test") for r in first["steps"].values())}
            modes = (("grouped", ()), ("ungrouped", ("--no-group",)))
            for mode, extra in modes[:1] if args.grouped_only else modes:
                evict_short_steps(store, first)
                wall, summary = submit(spec, root / f"{mode}-{n}", env, *extra)
                assert {r["phase"] for r in summary["steps"].values()} == {"Cached", "Succeeded"}
                row[f"{mode}_s"] = round(wall, 1)
                row[f"{mode}_summary"] = summary
                print(f"{n}x{n}: {mode:9s} {wall:6.1f} s ({row['short_steps']} short steps run)", flush=True)
            if not args.grouped_only:
                row["ratio"] = round(row["grouped_s"] / row["ungrouped_s"], 3)
            results["sizes"][f"{n}x{n}"] = row
        largest = max(args.sizes)
        row = results["sizes"][f"{largest}x{largest}"]
        grouped = row.pop("grouped_summary")
        for n in args.sizes:
            results["sizes"][f"{n}x{n}"].pop("grouped_summary", None)
            results["sizes"][f"{n}x{n}"].pop("ungrouped_summary", None)
        run_dir = root / f"grouped-{largest}"
        dp_test_in_process(run_dir, grouped)  # warm-up: imports, first model load
        own = dp_test_in_process(run_dir, grouped)
        tests = [k for k in grouped["steps"] if k in own]
        first_of_group = tests[0]  # waited for its worker's imports (started with the run)
        overhead = {k: round(grouped["steps"][k]["duration_s"] - own[k], 3) for k in tests}
        steady = [v for k, v in overhead.items() if k != first_of_group]
        results["per_step_overhead"] = {
            "size": f"{largest}x{largest}",
            "steps": overhead,
            "first_step_includes_worker_start": first_of_group,
            "median_s_after_first": round(statistics.median(steady), 3) if steady else None,
            "mean_s_after_first": round(statistics.mean(steady), 3) if steady else None,
            "dp_test_in_process_median_s": round(statistics.median(own.values()), 3),
        }
    for size, row in results["sizes"].items():
        print(f"{size}: " + ", ".join(f"{k} {v}" for k, v in row.items()))
    print("per grouped step overhead:", json.dumps(results["per_step_overhead"], indent=1))
    out = HERE / "results" / "step_groups.json"
    out.parent.mkdir(exist_ok=True)
    out.write_text(json.dumps(results, indent=2) + "\n")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
