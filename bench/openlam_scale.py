"""Benchmark: pretraining data at OpenLAM scale (issue 25) — a synthetic deepmd/npy/mixed dataset of
several GB, checked by ``lamflow data check`` and ``lamflow validate`` against a plain sequential read of
the same files, in one run.

    .venv/bin/python bench/openlam_scale.py [--gb 5] [--small-gb 1] [--rounds 2] [--root DIR] [--keep]

The generator writes systems of ``--natoms`` atoms (mixed type: ``type.raw`` all 0, the elements per frame
in ``real_atom_types.npy``, 3-6 of ``--elements`` elements per system) with float64 coordinates, forces,
boxes and energies, as dpdata writes deepmd/npy/mixed: about 5.1 kB a frame at 90 atoms, so 5 GB is about
a million frames. The first ``--small-gb`` of systems go under ``small/``, the rest under ``rest/``: the
small set is ``small/``, the whole set the root.

Per round, in alternating order, on the whole set: a plain sequential read of every file (4 MiB reads, no
parsing: the baseline) and ``lamflow data check`` as a fresh process (wall time, peak RSS from wait4);
then ``data check`` of the small set (its peak RSS, for the "same memory at 1 GB and 5 GB" figure). Page
cache: both read warm (the set is read once, untimed, first; it fits in RAM); where
``/proc/sys/vm/drop_caches`` is writable, one cold round of each as well. Then ``lamflow validate`` of a
one-head pretraining spec on
the whole set with an empty check cache, and again with the cache it left (a second validate of unchanged
data). Results go to bench/results/openlam_scale.json.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
LAMFLOW = Path(sys.executable).with_name("lamflow")
ELEMENTS = (
    "H He Li Be B C N O F Ne Na Mg Al Si P S Cl Ar K Ca Sc Ti V Cr Mn Fe Co Ni Cu Zn Ga Ge As Se Br Kr "
    "Rb Sr Y Zr Nb Mo Tc Ru Rh Pd Ag Cd In Sn Sb Te I Xe Cs Ba La Hf Ta W Re Os Ir Pt Au Hg Tl Pb Bi"
).split()


def frame_bytes(natoms: int) -> int:
    return 8 * (3 * natoms + 3 * natoms + natoms + 9 + 1)  # coord, force, real_atom_types, box, energy


def write_system(folder: Path, natoms: int, frames: int, elements: int, seed: int) -> None:
    """One deepmd/npy/mixed system: ``frames`` frames of ``natoms`` atoms in a 12 Å cubic box."""
    rng = np.random.default_rng(seed)
    chosen = rng.choice(elements, size=int(rng.integers(3, 7)), replace=False)
    sets = folder / "set.000000"
    sets.mkdir(parents=True)
    (folder / "type.raw").write_text("0\n" * natoms)
    (folder / "type_map.raw").write_text("\n".join(ELEMENTS[:elements]) + "\n")
    grid = np.stack(np.meshgrid(*[np.arange(5)] * 3, indexing="ij"), -1).reshape(-1, 3)[:natoms] * 2.4
    coord = grid[None] + rng.normal(0, 0.05, (frames, natoms, 3))
    np.save(sets / "coord.npy", coord.reshape(frames, -1))
    np.save(sets / "force.npy", rng.normal(0, 0.5, (frames, 3 * natoms)))
    np.save(sets / "real_atom_types.npy", rng.choice(chosen, size=(frames, natoms)).astype(np.int64))
    np.save(sets / "box.npy", np.tile(np.eye(3).ravel() * 12.0, (frames, 1)))
    np.save(sets / "energy.npy", rng.normal(-5.0 * natoms, 1.0, frames))


def generate(root: Path, gb: float, small_gb: float, natoms: int, frames: int, elements: int) -> dict:
    per_system = frame_bytes(natoms) * frames
    systems = max(1, round(gb * 1e9 / per_system))
    small = max(1, round(small_gb * 1e9 / per_system))
    started = time.perf_counter()
    for i in range(systems):
        part = "small" if i < small else "rest"
        write_system(root / part / f"sys-{i:04d}", natoms, frames, elements, seed=i)
    os.sync()
    return {"systems": systems, "small_systems": small, "frames": systems * frames, "natoms": natoms,
            "elements": elements, "bytes": du(root), "small_bytes": du(root / "small"),
            "generate_s": round(time.perf_counter() - started, 1)}  # fmt: skip


def du(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def plain_read(root: Path) -> float:
    """Seconds to read every file under ``root`` once, in 4 MiB reads (the baseline)."""
    started = time.perf_counter()
    for dirpath, dirs, names in os.walk(root):
        dirs.sort()
        for name in sorted(names):
            with open(os.path.join(dirpath, name), "rb", buffering=0) as handle:
                while handle.read(1 << 22):
                    pass
    return time.perf_counter() - started


def check(root: Path, env: dict[str, str]) -> tuple[float, int, dict]:
    """``lamflow data check ROOT`` in a fresh process, measured by a helper that reports its own child's
    peak RSS (RUSAGE_CHILDREN of a process with no other children)."""
    helper = (
        "import json,resource,subprocess,sys,time;t=time.perf_counter();"
        "r=subprocess.run(sys.argv[1:],capture_output=True,text=True);"
        "w=time.perf_counter()-t;"
        "print(json.dumps({'rc':r.returncode,'wall':w,'peak':resource.getrusage(resource.RUSAGE_CHILDREN)"
        ".ru_maxrss*1024,'out':r.stdout,'err':r.stderr[-2000:]}))"
    )
    argv = [sys.executable, "-c", helper, str(LAMFLOW), "data", "check", str(root), "--output", "json"]
    done = subprocess.run(argv, env=env, capture_output=True, text=True, check=True)
    report = json.loads(done.stdout)
    if report["rc"] != 0:
        raise SystemExit(f"data check {root} exited with {report['rc']}: {report['err']}")
    info = json.loads(report["out"])
    return report["wall"], report["peak"], info


def drop_caches() -> bool:
    try:
        os.sync()
        Path("/proc/sys/vm/drop_caches").write_text("3\n")
        return True
    except OSError:
        return False


def validate(spec: Path, env: dict[str, str]) -> tuple[float, float]:
    """(process wall seconds, seconds inside api.validate) of a fresh process that validates ``spec``."""
    code = (
        "import time,sys;t0=time.perf_counter();from lamflow.workflows import api;"
        "t=time.perf_counter();api.validate(sys.argv[1]);print(time.perf_counter()-t)"
    )
    started = time.perf_counter()
    done = subprocess.run([sys.executable, "-c", code, str(spec)], env=env, capture_output=True, text=True)
    if done.returncode != 0:
        raise SystemExit(f"validate exited with {done.returncode}: {done.stderr[-2000:]}")
    return time.perf_counter() - started, float(done.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--gb", type=float, default=5.0)
    parser.add_argument("--small-gb", type=float, default=1.0)
    parser.add_argument("--natoms", type=int, default=90)
    parser.add_argument("--frames", type=int, default=5000, help="frames per system")
    parser.add_argument("--elements", type=int, default=40)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--root", type=Path, default=None)
    parser.add_argument("--keep", action="store_true", help="keep the generated set")
    args = parser.parse_args()
    root = args.root or Path(tempfile.mkdtemp(prefix="lamflow-openlam-"))
    cache = Path(tempfile.mkdtemp(prefix="lamflow-openlam-cache-"))
    env = {**os.environ, "LAMFLOW_CACHE_DIR": str(cache), "LAMFLOW_REPORT": "0"}
    result: dict = {"root": str(root)}
    try:
        if not (root / "small").is_dir():
            result["data"] = generate(root, args.gb, args.small_gb, args.natoms, args.frames, args.elements)
        else:
            result["data"] = {"bytes": du(root), "small_bytes": du(root / "small"), "reused": True}
        print(json.dumps(result["data"]), flush=True)
        plain_read(root)  # warm: the whole set in the page cache before the warm rounds
        rounds = []
        for n in range(args.rounds):
            row: dict = {}
            order = ["plain", "check"] if n % 2 == 0 else ["check", "plain"]
            for what in order:
                if what == "plain":
                    row["plain_read_s"] = plain_read(root)
                else:
                    row["check_s"], row["check_peak_rss"], info = check(root, env)
                    row["check_in_process_s"] = info["seconds"]  # without the interpreter's start-up
                    row["frames_checked"] = sum(s["nframes"] for s in info["systems"])
            row["small_check_s"], row["small_check_peak_rss"], _ = check(root / "small", env)
            rounds.append(row)
            print(json.dumps(row), flush=True)
        result["rounds"] = rounds
        if drop_caches():
            cold: dict = {}
            cold["plain_read_s"] = plain_read(root)
            drop_caches()
            cold["check_s"], cold["check_peak_rss"], info = check(root, env)
            cold["check_in_process_s"] = info["seconds"]
            result["cold"] = cold
            print(json.dumps({"cold": cold}), flush=True)
        spec = root.parent / f"{root.name}-spec.yaml"
        spec.write_text(
            "name: openlam-scale\n"
            f"datasets:\n  all: {{path: {root}}}\n"
            "model: {preset: dpa2-tiny}\n"
            "stages:\n  pretrain:\n    heads:\n      all: {datasets: [all]}\n    training: {steps: 10}\n"
        )
        shutil.rmtree(cache, ignore_errors=True)
        first = validate(spec, env)
        second = validate(spec, env)
        result["validate"] = {"first_wall_s": first[0], "first_in_process_s": first[1],
                              "second_wall_s": second[0], "second_in_process_s": second[1]}  # fmt: skip
        print(json.dumps(result["validate"]), flush=True)
        spec.unlink()
    finally:
        shutil.rmtree(cache, ignore_errors=True)
        if not args.keep and args.root is None:
            shutil.rmtree(root, ignore_errors=True)

    def mean(key: str) -> float:
        return sum(r[key] for r in result["rounds"]) / len(result["rounds"])

    size = result["data"]["bytes"]
    rounds = result["rounds"]
    result["summary"] = {
        "gb": round(size / 1e9, 2),
        "check_throughput_vs_plain_read": round(mean("plain_read_s") / mean("check_s"), 3),
        "check_in_process_throughput_vs_plain_read": round(
            mean("plain_read_s") / mean("check_in_process_s"), 3
        ),
        "check_gb_per_s": round(size / 1e9 / mean("check_s"), 3),
        "plain_read_gb_per_s": round(size / 1e9 / mean("plain_read_s"), 3),
        "check_peak_rss_mib": round(max(r["check_peak_rss"] for r in result["rounds"]) / 2**20, 1),
        "small_check_peak_rss_mib": round(
            max(r["small_check_peak_rss"] for r in result["rounds"]) / 2**20, 1
        ),
        "second_validate_in_process_s": round(result["validate"]["second_in_process_s"], 3),
        "second_validate_wall_s": round(result["validate"]["second_wall_s"], 3),
    }
    if "cold" in result:
        cold = result["cold"]
        result["summary"]["cold_check_throughput_vs_plain_read"] = round(
            cold["plain_read_s"] / cold["check_s"], 3
        )
    out = HERE / "results" / "openlam_scale.json"
    out.parent.mkdir(exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result["summary"], indent=2))


if __name__ == "__main__":
    main()
