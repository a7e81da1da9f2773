"""Benchmark: a multi-task pretraining with one head per dataset, 30 datasets over 60 elements (issue 25:
validate, compile and render in < 2 s, and DeePMD-kit's argument checker accepts the input).

    .venv/bin/python bench/many_heads.py [--heads 30] [--rounds 3]

The datasets are synthetic deepmd/npy (``many_heads_spec``: one system of 4 frames of 4 atoms, two elements
each, a different pair per dataset, with finite energies and forces) so that only the number of heads and
elements grows. Timed in this process after one warm-up: ``validate`` (load, dataset checks, compile,
DeePMD-kit's argcheck of the multi-task input), ``render`` to an Argo Workflow, and its YAML dump; and
once, cold, ``lamflow validate`` and ``lamflow render`` as fresh processes with an empty dataset-check
cache. The baseline in the same run is the demo spec (2 heads). Results go to bench/results/many_heads.json.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import yaml

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from render_fanout import REPO, measure  # noqa: E402

from lamflow.workflows.settings import Settings  # noqa: E402

# the OpenLAM pretraining data cover 73 elements; the first 60 of these are enough for 30 disjoint pairs
ELEMENTS = (
    "H He Li Be B C N O F Ne Na Mg Al Si P S Cl Ar K Ca Sc Ti V Cr Mn Fe Co Ni Cu Zn Ga Ge As Se Br Kr "
    "Rb Sr Y Zr Nb Mo Tc Ru Rh Pd Ag Cd In Sn Sb Te I Xe Cs Ba La Hf Ta W Re Os Ir Pt Au Hg Tl Pb Bi"
).split()


def write_dataset(folder: Path, elements: tuple[str, str], seed: int) -> None:
    """One deepmd/npy system: 4 frames of 4 atoms (2 of each element) in a 10 Å box, atoms >= 2 Å apart."""
    rng = np.random.default_rng(seed)
    system = folder / "sys"
    (system / "set.000").mkdir(parents=True)
    (system / "type_map.raw").write_text("\n".join(elements) + "\n")
    (system / "type.raw").write_text("0\n0\n1\n1\n")
    corners = np.array([[1.0, 1, 1], [4.0, 1, 1], [1.0, 4, 1], [1.0, 1, 4]])
    coords = np.stack([corners + rng.uniform(-0.3, 0.3, corners.shape) for _ in range(4)])
    np.save(system / "set.000" / "coord.npy", coords.reshape(4, -1))
    np.save(system / "set.000" / "box.npy", np.tile(np.eye(3).ravel() * 10.0, (4, 1)))
    np.save(system / "set.000" / "energy.npy", rng.normal(-10.0, 0.1, 4))
    np.save(system / "set.000" / "force.npy", rng.normal(0.0, 0.5, (4, 12)))


def many_heads_spec(root: Path, heads: int) -> Path:
    """A spec pretraining ``heads`` heads, one per synthetic dataset (each two elements of its own)."""
    if 2 * heads > len(ELEMENTS):
        raise SystemExit(f"at most {len(ELEMENTS) // 2} heads with disjoint element pairs")
    datasets, head_map = {}, {}
    for i in range(heads):
        name = f"d{i:02d}"
        write_dataset(root / name, (ELEMENTS[2 * i], ELEMENTS[2 * i + 1]), seed=i)
        datasets[name] = {"path": str(root / name)}
        head_map[f"h{i:02d}"] = {"datasets": [name]}
    spec = {
        "version": 1,
        "name": f"heads-{heads}",
        "datasets": datasets,
        "model": {"preset": "dpa2-tiny"},
        "stages": {"pretrain": {"heads": head_map, "training": {"steps": 10}}},
    }
    path = root / "many-heads.yaml"
    path.write_text(yaml.safe_dump(spec, sort_keys=False))
    return path


def cold_cli(spec: Path, cache: Path) -> dict[str, float]:
    """``lamflow validate`` then ``lamflow render`` as fresh processes, the first with an empty
    dataset-check cache: interpreter start-up, imports and every dataset check included."""
    lamflow = str(Path(sys.executable).with_name("lamflow"))
    env = {**os.environ, "LAMFLOW_CACHE_DIR": str(cache), "LAMFLOW_IMAGE": "lamflow-ops:bench"}
    seconds = {}
    out = spec.parent / "rendered"
    for command in (["validate", str(spec)], ["render", str(spec), "-o", str(out)]):
        started = time.perf_counter()
        subprocess.run([lamflow, *command], check=True, env=env, capture_output=True)
        seconds[f"lamflow_{command[0]}_s"] = time.perf_counter() - started
    return seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--heads", type=int, default=30)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    settings = Settings(image="lamflow-ops:bench", store_prefix="lamflow")
    baseline = measure(REPO / "examples" / "demo.yaml", settings, args.rounds)
    with tempfile.TemporaryDirectory(prefix="lamflow-heads-") as tmp:
        spec = many_heads_spec(Path(tmp), args.heads)
        cold = cold_cli(spec, Path(tmp) / "cache")
        heads = measure(spec, settings, args.rounds)
    report = {
        "heads": args.heads,
        "elements": 2 * args.heads,
        "baseline_demo": baseline,
        "many_heads": heads,
        "cold_cli": cold,
        "ratio_total": heads["total_s"] / baseline["total_s"],
        "goal_met": heads["total_s"] < 2.0,
    }
    out = HERE / "results" / "many_heads.json"
    out.parent.mkdir(exist_ok=True)
    out.write_text(json.dumps(report, indent=2) + "\n")
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
