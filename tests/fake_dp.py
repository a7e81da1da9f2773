"""A fake ``dp`` for the fast test tier: checks what lamflow asks of DeePMD-kit, writes real-format outputs.

Used through ``LAMFLOW_DP="<python> tests/fake_dp.py"``. It checks, with DeePMD-kit's own code:
- the command line, with DeePMD-kit's argument parser (``deepmd.main.main_parser``; ``--pt`` required);
- every training input, with DeePMD-kit's argument checker (``deepmd.utils.argcheck.normalize``), after
  taking the model section from the checkpoint for ``--use-pretrain-script`` as ``dp`` does;
- that systems, checkpoints and models named on the command line exist, multi-task heads included.

It writes what ``dp --pt`` writes, in the same formats and names (a slow test compares them with the real
ones): ``train`` -> ``model.ckpt-<step>.pt`` (torch's zip format holding {"model": {"_extra_state":
{"model_params", "train_infos"}}, "optimizer"}), the ``model.ckpt.pt`` link, ``checkpoint``,
``lcurve.out``, ``out.json``;
``freeze``/``change-bias`` -> a TorchScript-layout zip (``.pth``); ``test`` -> the "weighted average of
errors" log block and ``<detail>.e.out``/``.e_peratom.out``/``.f.out``/``.v.out``/``.v_peratom.out`` with
predictions = labels + a deterministic, model-dependent perturbation (so errors are finite, non-zero and
differ between models). No network weights exist: only the file formats are real.

Test knobs: ``LAMFLOW_FAKE_DP_LOG`` (append one JSON line per call: argv, cwd, pid, start time, the
slot's variables and CPU affinity it saw),
``LAMFLOW_FAKE_DP_FAIL`` (a sub-command that exits 1), ``LAMFLOW_FAKE_DP_SLEEP`` (seconds to sleep
first, or ``COMMAND:SECONDS`` for one sub-command; for stop/interrupt tests), ``LAMFLOW_FAKE_DP_CRASH``
(a sub-command that dies with SIGKILL, as an out-of-memory process would),
``LAMFLOW_FAKE_DP_CACHE`` (a folder where the fake remembers what DeePMD-kit's parser made of a command
line and its argcheck of a training input, their absolute paths aside),
``LAMFLOW_FAKE_DP_KILL_AFTER_SAVE`` (``train`` dies with SIGKILL right after its first checkpoint, as a
preempted node would). ``train --restart CKPT`` continues from the checkpoint's step and appends to
``lcurve.out``, as DeePMD-kit does.
"""

from __future__ import annotations

import hashlib
import json
import os
import pickle
import signal
import sys
import time
import zipfile
from pathlib import Path
from typing import Any

import numpy as np

INFO = "[fake-dp] DEEPMD INFO    "


def fail(message: str, code: int = 1) -> None:
    print(f"[fake-dp] DEEPMD ERROR   {message}", file=sys.stderr)
    sys.exit(code)


def _put(archive: zipfile.ZipFile, name: str, data: str | bytes) -> None:
    """A zip entry with a fixed time stamp: the same inputs give byte-identical files (and metrics) in
    every run, grouped or not."""
    info = zipfile.ZipInfo(name, date_time=(1980, 1, 1, 0, 0, 0))
    info.compress_type = archive.compression
    archive.writestr(info, data)


# --- checkpoints (.pt): torch.save format, read back without importing torch when it holds no tensors ---


def save_checkpoint(path: Path, model_params: dict[str, Any], step: int, lr: float, **trained: Any) -> None:
    """What ``torch.save`` writes for a checkpoint without tensors: the same zip entries, no torch import
    (which would cost ~2 s per call); ``torch.load(..., weights_only=True)`` reads it like a real one.
    ``trained`` (the seed, the data: what makes real weights differ) goes to an entry of its own, which
    torch ignores: ``train_infos`` keeps exactly DeePMD-kit's keys."""
    state = {
        "model": {"_extra_state": {"model_params": model_params, "train_infos": {"lr": lr, "step": step}}}
    }
    data = {**state, "optimizer": {"state": {}, "param_groups": []}}
    stem = path.stem
    with zipfile.ZipFile(path, "w", zipfile.ZIP_STORED) as archive:
        _put(archive, f"{stem}/data.pkl", pickle.dumps(data, protocol=2))
        _put(archive, f"{stem}/.format_version", "1")
        _put(archive, f"{stem}/.storage_alignment", "64")
        _put(archive, f"{stem}/byteorder", "little")
        _put(archive, f"{stem}/version", "3\n")
        _put(archive, f"{stem}/.data/serialization_id", hashlib.sha1(path.name.encode()).hexdigest())
        _put(archive, f"{stem}/{TRAINED_ENTRY}", json.dumps(trained, sort_keys=True))


TRAINED_ENTRY = "fake_dp_trained.json"  # a fake checkpoint's seed and data (not part of torch's format)


def load_checkpoint_state(path: Path) -> dict[str, Any]:
    """``_extra_state`` of a fake checkpoint ({"model_params", "train_infos"})."""
    with zipfile.ZipFile(path) as archive:
        pkl = next(n for n in archive.namelist() if n.endswith("/data.pkl"))
        return pickle.loads(archive.read(pkl))["model"]["_extra_state"]


def _train_infos(path: Path) -> dict[str, Any]:
    """``train_infos`` of a fake checkpoint with what it was trained on (seed, data): what tells two
    trainings apart. Empty for a real checkpoint (its weights are what differ)."""
    try:
        infos = dict(load_checkpoint_state(path)["train_infos"])
        with zipfile.ZipFile(path) as archive:
            entry = next((n for n in archive.namelist() if n.endswith("/" + TRAINED_ENTRY)), None)
            if entry is not None:
                infos.update(json.loads(archive.read(entry)))
        return infos
    except Exception:  # a real checkpoint
        return {}


def load_checkpoint_params(path: Path) -> dict[str, Any]:
    """``model_params`` of a DeePMD-kit checkpoint (fake ones without torch; real ones with torch)."""
    try:
        with zipfile.ZipFile(path) as archive:
            pkl = next(n for n in archive.namelist() if n.endswith("/data.pkl"))
            data = pickle.loads(archive.read(pkl))
    except (zipfile.BadZipFile, StopIteration, pickle.UnpicklingError, AttributeError, ModuleNotFoundError):
        import torch

        try:
            data = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as exc:  # what dp itself would die of
            fail(f"{path}: not a DeePMD-kit checkpoint ({type(exc).__name__}: {exc})")
    try:
        return data["model"]["_extra_state"]["model_params"]
    except (KeyError, TypeError):
        fail(f"{path}: not a DeePMD-kit checkpoint (no model._extra_state.model_params)")
        raise AssertionError from None


# --- frozen models (.pth): the zip layout torch.jit.save gives DeePMD-kit's models ---

FAKE_ENTRY = "extra/fake_dp.json"


def save_frozen(path: Path, params: dict[str, Any], *, frozen_by_freeze: bool, **info: Any) -> None:
    """``dp freeze`` adds an empty ``extra/data_modifier.pth``; ``dp change-bias`` writes none."""
    stem = path.stem
    with zipfile.ZipFile(path, "w") as archive:
        _put(archive, f"{stem}/data.pkl", pickle.dumps({"fake": True}, protocol=2))
        _put(archive, f"{stem}/constants.pkl", pickle.dumps((), protocol=2))
        _put(archive, f"{stem}/byteorder", "little")
        _put(archive, f"{stem}/.data/version", "3\n")
        _put(archive, f"{stem}/.data/serialization_id", hashlib.sha1(path.name.encode()).hexdigest())
        if frozen_by_freeze:
            _put(archive, f"{stem}/extra/data_modifier.pth", b"")
        _put(archive, f"{stem}/{FAKE_ENTRY}", json.dumps({"model_params": params, **info}))


def load_frozen(path: Path) -> dict[str, Any]:
    if not path.is_file():
        fail(f"{path} not found")
    if path.suffix == ".pt":
        return {"model_params": load_checkpoint_params(path), "checkpoint": True}
    try:
        with zipfile.ZipFile(path) as archive:
            entry = next(n for n in archive.namelist() if n.endswith(FAKE_ENTRY))
            return json.loads(archive.read(entry))
    except (zipfile.BadZipFile, StopIteration) as exc:
        fail(f"{path}: not a frozen model written by the fake dp ({exc})")
        raise AssertionError from None


def single_task_params(params: dict[str, Any], head: str | None) -> dict[str, Any]:
    """One head of a (multi-task) model's params, shared_dict references resolved."""
    if "model_dict" not in params:
        return params
    heads = list(params["model_dict"])
    if head is None:
        fail(f"AssertionError: Head must be set for multitask model! Available heads are: {heads}")
    if head not in heads:
        fail(f"AssertionError: Head {head} not in multitask model! Available heads are: {heads}")
    return resolve_shared(params)["model_dict"][head]


def resolve_shared(params: dict[str, Any]) -> dict[str, Any]:
    """Multi-task params with every ``shared_dict`` reference ("name" or "name:level") replaced by its
    value, as DeePMD-kit's ``preprocess_shared_params`` does before checking the input."""
    shared = params.get("shared_dict", {})
    model_dict = {}
    for head, branch in params["model_dict"].items():
        branch = dict(branch)
        for key, value in list(branch.items()):
            if isinstance(value, str) and value.split(":")[0] in shared:
                branch[key] = shared[value.split(":")[0]]
        model_dict[head] = branch
    return {"model_dict": model_dict}


# --- data ---


def find_systems(root: Path) -> list[Path]:
    if not root.exists():
        fail(f"FileNotFoundError: {root} not found")
    found = sorted(Path(d) for d, _, files in os.walk(root, followlinks=True) if "type.raw" in files)
    if not found:
        fail(f"RuntimeError: did not find valid system in {root}")
    return found


def load_labels(system: Path, frames: int) -> dict[str, np.ndarray]:
    arrays: dict[str, list[np.ndarray]] = {}
    for set_dir in sorted(system.glob("set.*")):
        for name in ("energy", "force", "virial"):
            if (set_dir / f"{name}.npy").exists():
                arrays.setdefault(name, []).append(np.load(set_dir / f"{name}.npy"))
    out = {k: np.concatenate([a.reshape(len(a), -1) for a in v]) for k, v in arrays.items()}
    if frames:
        out = {k: v[:frames] for k, v in out.items()}
    return out


# --- sub-commands ---


def lcurve_columns(params: dict[str, Any], training: dict[str, Any], loss: dict[str, Any]) -> list[str]:
    if "model_dict" not in params and loss.get("type") == "property":  # one column pair per metric
        has_val = bool(training.get("validation_data"))
        cols = [c for m in loss.get("metric", ["mae"]) for c in (f"{m}_val", f"{m}_trn")]
        return ["step", *(c for c in cols if has_val or "_val" not in c), "lr"]
    if "model_dict" not in params:
        has_val = bool(training.get("validation_data"))
        cols = ["rmse_val", "rmse_trn", "rmse_e_val", "rmse_e_trn", "rmse_f_val", "rmse_f_trn"]
        return ["step", *(c for c in cols if has_val or "_val" not in c), "lr"]
    columns = ["step"]
    for head, data in training["data_dict"].items():
        has_val = bool(data.get("validation_data"))
        for base in ("rmse", "rmse_e", "rmse_f"):
            columns += [f"{base}_val_{head}"] * has_val + [f"{base}_trn_{head}"]
    return [*columns, "lr"]


def check_systems(training: dict[str, Any]) -> None:
    sections = training["data_dict"].values() if "data_dict" in training else [training]
    for section in sections:
        for kind in ("training_data", "validation_data"):
            for system in (section.get(kind) or {}).get("systems", []):
                path = Path(system)
                if not (path / "type.raw").exists() and not path.is_file():
                    fail(f"FileNotFoundError: {system} not found")


def _frames_seen(training: dict[str, Any]) -> int:
    """Frames in the training systems: models trained on different subsets differ (so do their errors)."""
    sections = training["data_dict"].values() if "data_dict" in training else [training]
    total = 0
    for section in sections:
        for system in (section.get("training_data") or {}).get("systems", []):
            for coord in Path(system).glob("set.*/coord.npy"):
                total += int(np.load(coord, mmap_mode="r").shape[0])
    return total


def _remembered(kind: str, key: Any) -> Path | None:
    """Where the result for ``key`` (with DeePMD-kit's version) is remembered under
    ``LAMFLOW_FAKE_DP_CACHE``; None when that is not set."""
    from importlib.metadata import version

    cache = os.environ.get("LAMFLOW_FAKE_DP_CACHE")
    if not cache:
        return None
    text = json.dumps([key, version("deepmd-kit")], sort_keys=True)
    return Path(cache, f"{kind}-{hashlib.sha256(text.encode()).hexdigest()}.json")


def normalized_input(config: dict[str, Any], multi_task: bool) -> dict[str, Any]:
    """``config`` normalized by DeePMD-kit's argument checker, or the one line ``dp`` would fail with; a
    result remembered under ``LAMFLOW_FAKE_DP_CACHE`` when it is set (the test session's runs hand the
    same few inputs to ``train`` hundreds of times), keyed by the input with its absolute paths marked."""
    paths: list[str] = []
    shape = _without_paths(config, paths)  # every test's data lives under paths of its own
    remembered = _remembered("input", [shape, multi_task])
    if remembered is not None and remembered.is_file():
        return _with_paths(json.loads(remembered.read_text()), paths)
    from deepmd.utils.argcheck import normalize

    try:
        normalized = normalize(shape, multi_task=multi_task)
    except Exception as exc:  # DeePMD-kit's own message, as dp would print it
        fail(_unmarked(f"{type(exc).__name__}: {exc}", paths))
    if remembered is not None:
        _remember(remembered, json.dumps(normalized))
    return _with_paths(normalized, paths)


def _remember(path: Path, text: str) -> None:
    """Write a remembered result whole or not at all (tests run side by side)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    scratch = path.with_name(f".{path.name}.{os.getpid()}")
    scratch.write_text(text)
    os.replace(scratch, path)


PATH_MARK = "@fake-dp-path-"  # stands for an absolute path while the argument checker looks


def _without_paths(value: Any, paths: list[str]) -> Any:
    """``value`` with each absolute path replaced by a numbered mark (kept in ``paths``): the argument
    checker checks types and keys, never what a path names, so inputs that differ only in their paths
    share one remembered result (the 74 distinct inputs of a fast-tier run are 39 once marked)."""
    if isinstance(value, dict):
        return {k: _without_paths(v, paths) for k, v in value.items()}
    if isinstance(value, list):
        return [_without_paths(v, paths) for v in value]
    if isinstance(value, str) and value.startswith("/"):
        paths.append(value)
        return f"{PATH_MARK}{len(paths) - 1}"
    return value


def _unmarked(text: str, paths: list[str]) -> str:
    """``text`` with each mark replaced by its path (the highest numbers first: mark 1 is in mark 10)."""
    for i in reversed(range(len(paths))):
        text = text.replace(f"{PATH_MARK}{i}", paths[i])
    return text


def _with_paths(value: Any, paths: list[str]) -> Any:
    if isinstance(value, dict):
        return {k: _with_paths(v, paths) for k, v in value.items()}
    if isinstance(value, list):
        return [_with_paths(v, paths) for v in value]
    if isinstance(value, str) and value.startswith(PATH_MARK):
        return paths[int(value[len(PATH_MARK) :])]
    return value


def train(args: Any) -> None:
    config = json.loads(Path(args.INPUT).read_text())
    start = args.finetune or args.restart or args.init_model
    if start is not None and not Path(start).exists():
        fail(f"FileNotFoundError: {start} not found")
    if args.finetune is not None:
        if str(args.finetune).endswith(".pth"):
            fail("RuntimeError: Cannot use weights_only=True with TorchScript archives passed to torch.load")
        base = load_checkpoint_params(Path(args.finetune))
        old_map = single_task_params(base, next(iter(base["model_dict"]))) if "model_dict" in base else base
        missing = [t for t in config["model"]["type_map"] if t not in old_map.get("type_map", [])]
        if missing:  # deepmd/utils/finetune.py's words
            print(
                "[fake-dp] DEEPMD WARNING These types are not in the pretrained model and related params "
                f"will be randomly initialized: {missing}."
            )
        if args.use_pretrain_script:
            branch = None if args.model_branch in (None, "RANDOM") else args.model_branch
            if "model_dict" in base and branch is None:
                branch = next(iter(base["model_dict"]))  # descriptor is shared; any head gives it
            model = dict(single_task_params(base, branch))
            model["type_map"] = config["model"]["type_map"]
            if args.model_branch == "RANDOM":  # deepmd/utils/finetune.py: a new fitting net, the input's
                model["fitting_net"] = config["model"].get("fitting_net", {})
            config["model"] = model
    multi_task = "model_dict" in config["model"]
    if multi_task:
        config["model"] = resolve_shared(config["model"])
    normalized = normalized_input(config, multi_task)
    training = normalized["training"]
    check_systems(training)
    steps = int(training["numb_steps"])
    disp, save = int(training.get("disp_freq", 1000)), int(training.get("save_freq", 1000))
    columns = lcurve_columns(normalized["model"], training, normalized.get("loss") or {})
    lr0 = float(normalized["learning_rate"].get("start_lr", 1e-3))
    first = 1
    rows = ["# step    " + "   ".join(f"{c:<14s}" for c in columns[1:]) + "\n"]  # as DeePMD-kit lays it out
    rows.append("# If there is no available reference data, rmse_*_{val,trn} will print nan\n")
    if args.restart is not None:  # DeePMD-kit continues at the saved step and appends to lcurve.out
        first = int(load_checkpoint_state(Path(args.restart))["train_infos"]["step"]) + 2
        rows = []
        print(f"{INFO}Resuming from step {first - 1}")
    shown = sorted(s for s in {1, *range(disp, steps + 1, disp), steps} if s >= first)
    saves = sorted(s for s in {*range(save, steps + 1, save), steps} if s >= first)
    killed = bool(os.environ.get("LAMFLOW_FAKE_DP_KILL_AFTER_SAVE")) and saves[0] < steps
    if killed:  # the process dies after its first save: lcurve.out stops there
        shown, saves = [s for s in shown if s <= saves[0]], saves[:1]
    for step in shown:
        values = [f"{step:7d}"] + [f"{(1.0 + i % 3) / (1.0 + step):.2e}" for i in range(len(columns) - 2)]
        rows.append(" ".join(values) + f" {lr0 * 0.5 ** (step / max(steps, 1)):.1e}\n")
    with open("lcurve.out", "a" if args.restart is not None else "w") as lcurve:
        lcurve.write("".join(rows))
    Path("out.json").write_text(json.dumps(normalized, indent=2))
    for step in saves:
        save_checkpoint(
            Path(f"model.ckpt-{step}.pt"), normalized["model"], step - 1, lr0,
            seed=training.get("seed"), systems=sum(
                len((section.get("training_data") or {}).get("systems", []))
                for section in (training["data_dict"].values() if "data_dict" in training else [training])
            ),
            frames=_frames_seen(training), fine_tuned=args.finetune is not None,
        )  # fmt: skip
        print(f"{INFO}Saved model to model.ckpt-{step}.pt")
    if killed:
        os.kill(os.getpid(), 9)
    link = Path("model.ckpt.pt")
    link.unlink(missing_ok=True)
    link.symlink_to(f"model.ckpt-{steps}.pt")
    Path("checkpoint").write_text(f"model.ckpt-{steps}.pt")
    print(f"{INFO}Trained model has been saved to: model.ckpt")


def freeze(args: Any) -> None:
    folder = Path(args.checkpoint_folder)
    pointer = folder / "checkpoint"
    if not pointer.exists():
        fail(f"FileNotFoundError: {pointer} not found")
    checkpoint = folder / pointer.read_text().strip()
    params = load_checkpoint_params(checkpoint)
    if "model_dict" in params and args.head is None:
        fail("AssertionError: Head must be specified in multitask mode!")
    save_frozen(
        Path(args.output),
        single_task_params(params, args.head),
        frozen_by_freeze=True,
        head=args.head,
        trained=_train_infos(checkpoint),  # longer training, other weights
    )
    print(f"{INFO}Saved frozen model to {args.output}")


def change_bias(args: Any) -> None:
    model = load_frozen(Path(args.INPUT))
    systems = find_systems(Path(args.system))
    params = single_task_params(model["model_params"], args.model_branch)
    type_map = params.get("type_map", [])
    print(f"{INFO}Change output bias of {type_map} from [0.0] to [-1.0] ({len(systems)} systems)")
    parent = hashlib.sha256(Path(args.INPUT).read_bytes()).hexdigest()  # two heads' models stay distinct
    save_frozen(
        Path(args.output),
        params,
        frozen_by_freeze=False,
        bias_changed_on=Path(args.system).name,
        parent=parent,
    )
    print(f"{INFO}Saved model to {args.output}")


def _errors(label: np.ndarray, pred: np.ndarray) -> tuple[float, float]:
    diff = pred - label
    return float(np.mean(np.abs(diff))), float(np.sqrt(np.mean(diff**2)))


def _write_detail(
    path: str, system: Path, header: str, label: np.ndarray, pred: np.ndarray, mode: str
) -> None:
    """As DeePMD-kit 3.2 writes it: the first system's header, then every system's rows appended."""
    with open(path, mode) as out:
        np.savetxt(
            out, np.concatenate([label, pred], axis=1), header=f"{system}: {header}" if mode == "w" else ""
        )


def test_property(args: Any, fitting: dict[str, Any], scale: float) -> None:
    """What DeePMD-kit 3.2's PropertyTester prints and writes (deepmd/infer/model_test/property.py)."""
    name, dim = fitting["property_name"], int(fitting.get("task_dim", 1))
    totals: list[tuple[float, float, int]] = []
    for index, system in enumerate(find_systems(Path(args.system))):
        sets = sorted(system.glob("set.*"))
        if not all((s / f"{name}.npy").exists() for s in sets):
            fail(f"RuntimeError: {system}/set.*/{name}.npy not found")
        label = np.concatenate([np.load(s / f"{name}.npy").reshape(-1, dim) for s in sets])
        if args.numb_test:
            label = label[: args.numb_test]
        rng = np.random.default_rng(index)
        pred = label + 0.2 * scale * (1 + rng.standard_normal(label.shape))
        print(f"{INFO}# ---------------output of dp test--------------- ")
        print(f"{INFO}# testing system : {system}")
        mae, rmse = _errors(label, pred)
        print(f"{INFO}# number of test data : {len(label)} ")
        print(f"{INFO}PROPERTY MAE            : {mae:e} units")
        print(f"{INFO}PROPERTY RMSE           : {rmse:e} units")
        print(f"{INFO}# ----------------------------------------------- ")
        totals.append((mae, rmse, label.size))
        if args.detail_file:
            group = f".{index}" if index else ""
            for frame in range(len(label)):
                np.savetxt(
                    f"{args.detail_file}.property.out{group}.{frame}",
                    np.stack([label[frame], pred[frame]], axis=1),
                    header=f"{system} - {frame}: data_property pred_property",
                )
    size = sum(n for _, _, n in totals)
    print(f"{INFO}# ----------weighted average of errors----------- ")
    print(f"{INFO}# number of systems : {len(totals)}")
    print(f"{INFO}PROPERTY MAE            : {sum(m * n for m, _, n in totals) / size:e} units")
    pooled_rmse = float(np.sqrt(sum(r**2 * n for _, r, n in totals) / size))
    print(f"{INFO}PROPERTY RMSE           : {pooled_rmse:e} units")
    print(f"{INFO}# ----------------------------------------------- ")


def test(args: Any) -> None:
    model = load_frozen(Path(args.model))
    params = single_task_params(model["model_params"], args.head)  # a multi-task checkpoint needs --head
    # 99,991 distinct scales in [1e-3, 0.1): two models of a test practically never share one
    scale = 1e-3 * (
        1 + (int(hashlib.sha256(Path(args.model).read_bytes()).hexdigest()[:8], 16) % 99991) / 1010
    )
    if (params.get("fitting_net") or {}).get("type") == "property":
        test_property(args, params["fitting_net"], scale)
        return
    totals: dict[str, list[tuple[float, float, int]]] = {}
    for index, system in enumerate(find_systems(Path(args.system))):
        labels = load_labels(system, args.numb_test)
        natoms = len((system / "type.raw").read_text().split())
        nframes = len(labels["energy"])
        rng = np.random.default_rng(index)
        e_label = labels["energy"].reshape(-1, 1)
        e_pred = e_label + scale * natoms * (1 + rng.standard_normal(e_label.shape))
        f_label = labels.get("force", np.zeros((nframes, 3 * natoms))).reshape(-1, 3)
        f_pred = f_label + scale * 100 * rng.standard_normal(f_label.shape)
        print(f"{INFO}# ---------------output of dp test--------------- ")
        print(f"{INFO}# testing system : {system}")
        print(f"{INFO}# number of test data : {nframes} ")
        metrics = {
            "Energy": _errors(e_label, e_pred),
            "Energy/Natoms": _errors(e_label / natoms, e_pred / natoms),
            "Force": _errors(f_label, f_pred),
        }
        v_label = labels.get("virial")
        v_pred = (v_label if v_label is not None else np.zeros((nframes, 9))) + scale
        if v_label is not None:
            metrics["Virial"] = _errors(v_label, v_pred)
            metrics["Virial/Natoms"] = _errors(v_label / natoms, v_pred / natoms)
        for name, (mae, rmse) in metrics.items():
            totals.setdefault(name, []).append((mae, rmse, nframes))
        _print_block(metrics)
        print(f"{INFO}# ----------------------------------------------- ")
        if args.detail_file:
            mode = "w" if index == 0 else "a"
            d, v0 = args.detail_file, v_label if v_label is not None else np.zeros((nframes, 9))
            _write_detail(f"{d}.e.out", system, "data_e pred_e", e_label, e_pred, mode)
            _write_detail(
                f"{d}.e_peratom.out", system, "data_e pred_e", e_label / natoms, e_pred / natoms, mode
            )
            fx = "data_fx data_fy data_fz pred_fx pred_fy pred_fz"
            _write_detail(f"{d}.f.out", system, fx, f_label, f_pred, mode)
            vx = " ".join(f"{k}_v{a}{b}" for k in ("data", "pred") for a in "xyz" for b in "xyz")
            _write_detail(f"{d}.v.out", system, vx, v0, v_pred, mode)
            _write_detail(f"{d}.v_peratom.out", system, vx, v0 / natoms, v_pred / natoms, mode)
    print(f"{INFO}# ----------weighted average of errors----------- ")
    print(f"{INFO}# number of systems : {len(next(iter(totals.values())))}")
    weighted = {}
    for name, rows in totals.items():
        frames = sum(n for _, _, n in rows)
        mae = sum(m * n for m, _, n in rows) / frames
        rmse = float(np.sqrt(sum(r**2 * n for _, r, n in rows) / frames))
        weighted[name] = (mae, rmse)
    _print_block(weighted)
    print(f"{INFO}# ----------------------------------------------- ")


def _print_block(metrics: dict[str, tuple[float, float]]) -> None:
    units = {"Energy": "eV", "Energy/Natoms": "eV", "Force": "eV/Å", "Virial": "eV", "Virial/Natoms": "eV"}
    for name, (mae, rmse) in metrics.items():
        base, _, per = name.partition("/")
        label = f"{base:<6s} MAE" + (f"/{per}" if per else "")
        print(f"{INFO}{label:<18s} : {mae:e} {units[name]}")
        label = f"{base:<6s} RMSE" + (f"/{per}" if per else "")
        print(f"{INFO}{label:<18s} : {rmse:e} {units[name]}")


def compress(args: Any) -> None:
    """Writes a model that :class:`DeepPot` evaluates like its source, within 1e-9 (as tabulation does)."""
    model = load_frozen(Path(args.input))
    params = model["model_params"]
    kind = params.get("descriptor", {}).get("type")
    if kind in ("dpa3", "dpa4", "SeZM"):
        fail(f"NotImplementedError: Compression is unsupported for {kind.upper()}.")
    print(f"{INFO}stride {args.step}, extrapolate {args.extrapolate}, frequency {args.frequency}")
    save_frozen(
        Path(args.output),
        params,
        frozen_by_freeze=False,  # dp compress writes no extra/data_modifier.pth
        compressed_from=model_identity(Path(args.input)),
        compressed=True,
    )
    print(f"{INFO}Saved compressed model to {args.output}")


def show(args: Any) -> None:
    model = load_frozen(Path(args.INPUT))
    params = model["model_params"]
    if "model_dict" in params:
        print(f"{INFO}This is a multitask model")
        print(f"{INFO}Available model branches are {list(params['model_dict'])}")
        return
    print(f"{INFO}This is a singletask model")
    for attribute in args.ATTRIBUTES:
        if attribute == "type-map":
            print(f"{INFO}The type_map is {params.get('type_map', [])}")
        elif attribute == "descriptor":
            print(f"{INFO}The descriptor parameter is {params.get('descriptor', {})}")


# --- in-process evaluation: what lamflow.ops.dp.inference_module() takes from this script ---

PAIR_CUTOFF = 3.0  # Å
PAIR_STRENGTH = 0.2  # eV


def model_identity(path: Path) -> str:
    """What makes two fake models predict differently: the file, or for a compressed model its source."""
    info = load_frozen(path)
    if "compressed_from" in info:
        return str(info["compressed_from"])
    return hashlib.sha256(path.read_bytes()).hexdigest()


class DeepPot:
    """A smooth pair repulsion (energy-conserving: NVE runs on it are stable) plus per-type energy
    constants, scaled per model so that two models differ by up to 5 %; a compressed model differs from
    its source by 1e-9 relative."""

    def __init__(self, model_file: str, **_: Any) -> None:
        path = Path(model_file)
        info = load_frozen(path)
        params = info["model_params"]
        if "model_dict" in params:
            fail("a multi-task model needs a head")
        self.type_map = list(params.get("type_map", []))
        digest = model_identity(path)
        self.scale = (
            1.0 + 0.05 * (int(digest[:8], 16) % 1000) / 1000 + (1e-9 if info.get("compressed") else 0.0)
        )

    def get_type_map(self) -> list[str]:
        return list(self.type_map)

    def _one(
        self, coords: np.ndarray, cell: np.ndarray | None, types: np.ndarray
    ) -> tuple[float, np.ndarray, np.ndarray]:
        from ase import Atoms
        from ase.neighborlist import neighbor_list

        atoms = Atoms(positions=coords.reshape(-1, 3), cell=None if cell is None else cell.reshape(3, 3),
                      pbc=cell is not None)  # fmt: skip
        i, j, d, vec = neighbor_list("ijdD", atoms, PAIR_CUTOFF)
        d = np.maximum(d, 1e-6)
        gap = 1.0 / d - 1.0 / PAIR_CUTOFF  # E_pair = eps * rc^2 * gap^2: smooth at rc, unbounded at 0
        energy = 0.5 * PAIR_STRENGTH * PAIR_CUTOFF**2 * float(np.sum(gap**2))  # each pair appears twice
        energy += float(np.sum(-1.0 - 0.1 * types))
        pair_force = (2 * PAIR_STRENGTH * PAIR_CUTOFF**2 * gap / d**3)[:, None] * vec  # on j, away from i
        force = np.zeros((len(types), 3))
        np.add.at(force, j, 0.5 * pair_force)
        np.add.at(force, i, -0.5 * pair_force)
        # -sum over pairs of r_ij (x) f_ij; every pair is listed twice
        virial = -0.5 * np.einsum("ka,kb->ab", vec, pair_force) if cell is not None else np.zeros((3, 3))
        return energy * self.scale, force * self.scale, virial * self.scale

    def eval(
        self, coords: Any, cells: Any, atom_types: Any, atomic: bool = False, **_: Any
    ) -> tuple[np.ndarray, ...]:
        coords = np.asarray(coords, dtype=float)
        types = np.asarray(atom_types, dtype=int).reshape(-1)
        nframes = coords.reshape(-1, len(types) * 3).shape[0]
        coords = coords.reshape(nframes, -1)
        cells_ = None if cells is None else np.asarray(cells, dtype=float).reshape(nframes, 9)
        out = [self._one(coords[k], None if cells_ is None else cells_[k], types) for k in range(nframes)]
        energy = np.array([o[0] for o in out]).reshape(nframes, 1)
        force = np.stack([o[1] for o in out]).reshape(nframes, len(types), 3)
        virial = np.stack([o[2].reshape(9) for o in out])
        return energy, force, virial


def _ase_calculator_class() -> Any:
    from ase.calculators.calculator import Calculator, all_changes

    class DP(Calculator):
        """ASE calculator on :class:`DeepPot` (what deepmd.calculator.DP is on the real DeepPot)."""

        implemented_properties = ["energy", "free_energy", "forces", "stress"]

        def __init__(self, model: str, **kwargs: Any) -> None:
            super().__init__(**kwargs)
            self.dp = DeepPot(model)

        def calculate(
            self, atoms: Any = None, properties: Any = ("energy",), system_changes: Any = all_changes
        ) -> None:
            super().calculate(atoms, properties, system_changes)
            type_map = self.dp.get_type_map()
            types = np.array([type_map.index(s) for s in self.atoms.get_chemical_symbols()])
            periodic = bool(all(self.atoms.pbc))
            cell = np.asarray(self.atoms.cell).reshape(1, 9) if periodic else None
            e, f, v = self.dp.eval(self.atoms.positions.reshape(1, -1), cell, types)
            self.results["energy"] = self.results["free_energy"] = float(e[0, 0])
            self.results["forces"] = f[0]
            if periodic:
                from ase.stress import full_3x3_to_voigt_6_stress

                self.results["stress"] = full_3x3_to_voigt_6_stress(
                    -v[0].reshape(3, 3) / self.atoms.get_volume()
                )

    return DP


def __getattr__(name: str) -> Any:  # the calculator class is built on first use (ASE imported then)
    if name == "DP":
        return _ase_calculator_class()
    raise AttributeError(name)


COMMANDS = {
    "train": train,
    "freeze": freeze,
    "test": test,
    "change-bias": change_bias,
    "compress": compress,
    "show": show,
}


def _started_by() -> str:
    """The command line of the process that started the step process that called this dp (the step
    launcher, dflow's pool process, ...): the parent's parent, or this process's parent inside a worker."""
    try:
        parent = os.getppid()
        with open(f"/proc/{parent}/stat") as f:
            grandparent = int(f.read().rsplit(")", 1)[1].split()[1])
        with open(f"/proc/{grandparent}/cmdline", "rb") as f:
            return " ".join(part.decode() for part in f.read().split(b"\0") if part)
    except (OSError, ValueError, IndexError):
        return ""


# what a call saw of its slot (ops/runtime/slots.py) and of torchrun, in its LAMFLOW_FAKE_DP_LOG line
SEEN_VARIABLES = (
    "CUDA_VISIBLE_DEVICES",
    "OMP_NUM_THREADS",
    "DP_INTRA_OP_PARALLELISM_THREADS",
    "DP_INTER_OP_PARALLELISM_THREADS",
    "WORLD_SIZE",
    "RANK",
    "GROUP_RANK",  # torchrun: the node's rank
    "LOCAL_RANK",
)


def parsed_args(argv: list[str]) -> Any:
    """``argv`` as DeePMD-kit's parser reads it (it exits 2 on an unknown flag); remembered under
    ``LAMFLOW_FAKE_DP_CACHE`` as ``normalized_input``'s results are, its absolute paths aside (importing
    the parser costs a fake call more than anything it does)."""
    import argparse

    paths: list[str] = []
    remembered = _remembered("argv", _without_paths(argv, paths))
    if remembered is not None and remembered.is_file():
        return argparse.Namespace(**_with_paths(json.loads(remembered.read_text()), paths))
    from deepmd.main import main_parser

    args = main_parser().parse_args(argv)
    if remembered is not None:
        marks = {path: f"{PATH_MARK}{i}" for i, path in reversed(list(enumerate(paths)))}
        try:  # the values with argv's absolute paths marked as argv's were
            text = json.dumps(
                {k: marks.get(v, v) if isinstance(v, str) else v for k, v in vars(args).items()}
            )
        except TypeError:  # a value JSON cannot hold: parse again next time
            return args
        _remember(remembered, text)
    return args


def main(argv: list[str]) -> None:
    log = os.environ.get("LAMFLOW_FAKE_DP_LOG")
    if log:
        with open(log, "a") as out:
            record = {
                "argv": argv,
                "cwd": os.getcwd(),
                "pid": os.getpid(),
                "started_by": _started_by(),
                "started_at": time.time(),
                "env": {name: os.environ.get(name) for name in SEEN_VARIABLES},
                "affinity": sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None,
            }
            out.write(json.dumps(record) + "\n")
    if int(os.environ.get("WORLD_SIZE", "1")) > 1 and "train" in argv:
        print(f"DEEPMD INFO    Rank: {os.environ.get('RANK')}/{os.environ['WORLD_SIZE']}", flush=True)
    if os.environ.get("RANK", "0") != "0":
        return  # under torchrun: as in DeePMD-kit, rank 0 alone writes the outputs
    args = parsed_args(argv)  # DeePMD-kit's parser: exits 2 on an unknown flag
    if args.backend != "pytorch":
        fail(f"lamflow must select the PyTorch backend (--pt); got backend {args.backend!r}", 2)
    if args.command not in COMMANDS:
        fail(f"the fake dp does not implement {args.command!r}", 2)
    only, _, seconds = os.environ.get("LAMFLOW_FAKE_DP_SLEEP", "0").rpartition(":")
    if only in ("", args.command):
        time.sleep(float(seconds))
    print(f"{INFO}DeePMD version: fake ({args.command})")
    print(f"{INFO}Computing Device: CPU")  # as in DeePMD-kit's start-up summary
    if os.environ.get("LAMFLOW_FAKE_DP_FAIL") == args.command:
        fail(f"RuntimeError: {args.command} failed (LAMFLOW_FAKE_DP_FAIL)")
    if os.environ.get("LAMFLOW_FAKE_DP_CRASH") == args.command:
        os.kill(os.getpid(), signal.SIGKILL)  # as the kernel's OOM killer would (in a worker: the worker)
    COMMANDS[args.command](args)


if __name__ == "__main__":
    sys.stdout.reconfigure(encoding="utf-8", line_buffering=True)  # type: ignore[union-attr]
    main(sys.argv[1:])
