"""``dp`` for data-parallel training on CPUs: ``python -m lamflow.ops.training.cpu_ddp --pt train ...``.

DeePMD-kit 3.2 trains data-parallel on CUDA only: under torchrun it calls
``init_process_group(backend="cuda:nccl,cpu:gloo")`` (a CPU-only torch build has no NCCL and stops there),
``torch.cuda.set_device(LOCAL_RANK)``, and wraps the model in ``DistributedDataParallel`` with
``device_ids=[LOCAL_RANK]`` (refused for a module on the CPU). Where torch sees no CUDA device this module
makes those three calls what they mean on CPUs — the gloo backend alone, no device to select, DDP without
device ids — and then runs DeePMD-kit's own entry point with the same arguments, unchanged otherwise. With
a CUDA device it patches nothing. :func:`lamflow.ops.dp.launcher` uses it for more than one process on a
machine without GPUs (CPU nodes of a cluster, or the local engine's "nodes" on this machine).
"""

from __future__ import annotations

import sys
from typing import Any


def patch_for_cpu() -> bool:
    """Make DeePMD-kit's data-parallel set-up work on CPUs; False (nothing patched) where CUDA is there."""
    import torch
    import torch.distributed as dist

    if torch.cuda.is_available():
        return False
    init = dist.init_process_group

    def init_process_group(*args: Any, **kwargs: Any) -> Any:
        kwargs["backend"] = "gloo"  # DeePMD-kit asks for "cuda:nccl,cpu:gloo", by keyword
        return init(*args[1:], **kwargs)

    dist.init_process_group = init_process_group
    torch.cuda.set_device = lambda device: None

    from deepmd.pt.train import training

    ddp = training.DDP

    def cpu_ddp(module: Any, *args: Any, device_ids: Any = None, output_device: Any = None, **kw: Any) -> Any:
        return ddp(module, *args, **kw)

    training.DDP = cpu_ddp
    return True


def main(argv: list[str] | None = None) -> None:
    patch_for_cpu()
    from deepmd.main import main as dp_main

    dp_main(sys.argv[1:] if argv is None else argv)


if __name__ == "__main__":  # pragma: no cover - run by torchrun in each training process
    main()
