"""Names of the files a step writes, and how an output artifact is laid out (dflow's catalog); shared by
ops, the compiler and the engines."""

from __future__ import annotations

import json
from pathlib import Path

INPUT_JSON = "input.json"
COMPLETED_INPUT = "out.json"  # what dp train writes: the input after its own completion
LCURVE = "lcurve.out"
TRAIN_LOG = "train.log"
FREEZE_LOG = "freeze.log"
TEST_LOG = "test.log"
BIAS_LOG = "change-bias.log"
CHECKPOINT = "model.ckpt.pt"
FROZEN_MODEL = "model.pth"
DETAIL_PREFIX = "detail"
WORK_DIR = "work"


def resolve_output(artifact: Path) -> Path:
    """The file or folder a step returned for an output artifact.

    dflow stores an output as a folder holding the returned path (relative to the step's directory)
    plus a ``.dflow/`` catalog naming it; a single cataloged item is resolved to that item.
    """
    target = artifact.resolve()
    catalog = target / ".dflow"
    if not catalog.is_dir():
        return target
    items = []
    for entry in sorted(catalog.iterdir()):
        try:
            items += [i["dflow_list_item"] for i in json.loads(entry.read_text()).get("path_list", [])]
        except (ValueError, KeyError, TypeError):
            return target
    return target / items[0] if len(items) == 1 and (target / items[0]).exists() else target


def catalog_output(item: Path, folder: Path) -> Path:
    """Lay out ``item`` (a file or folder) as dflow stores an output artifact: ``folder/<name>`` plus a
    ``.dflow/`` catalog naming it, so that dflow steps and :func:`resolve_output` find it."""
    import shutil

    folder.mkdir(parents=True, exist_ok=True)
    target = folder / item.name
    if item.is_dir():
        shutil.copytree(item, target, symlinks=False, dirs_exist_ok=True)
    else:
        shutil.copy2(item, target)
    (folder / ".dflow").mkdir(exist_ok=True)
    catalog = {"path_list": [{"dflow_list_item": item.name, "order": 0}]}
    (folder / ".dflow" / "lamflow-group").write_text(json.dumps(catalog))
    return target


def bundle_catalog(names: list[str]) -> str:
    """dflow's catalog of a dataset bundle (a ``{name: folder}`` artifact): one ``<name>/`` folder each.
    Written as ``.dflow/lamflow-inputs`` in the bundle's folder, it makes the folder read as that dict."""
    return json.dumps({"path_list": [{"dflow_list_item": n, "order": n} for n in names]})


def resolve_input(folder: Path) -> Path | dict[str, Path]:
    """An input artifact as a step receives it (what dflow's step scripts read from its catalog): a
    bundle's ``{name: path}``, the one cataloged file or folder, or the folder itself."""
    from dflow.utils import assemble_path_object

    found = assemble_path_object(str(folder))
    if isinstance(found, dict):
        return {str(k): Path(v) for k, v in found.items()}
    if isinstance(found, list) and len(found) == 1 and found[0] is not None:
        return Path(found[0])
    return folder
