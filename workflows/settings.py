"""Where and how lamflow runs: a pydantic-settings object (env prefix ``LAMFLOW_``), passed explicitly.

The science lives in the spec; this holds the machine side (run directory, engine, worker count).
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="LAMFLOW_", extra="forbid", frozen=True)

    run_root: Path = Field(Path("runs"), description="Runs are created as <run_root>/<run-id>/.")
    engine: str = Field("local", description="Execution engine: local (dflow debug mode, the default).")
    image: str | None = Field(
        None,
        description="Container image of the steps on Argo (images/: lamflow-ops:<version>-cuda or -cpu); "
        "required by --engine argo; `render` writes lamflow-ops:<version>-cuda (or -cpu) without it.",
    )
    cluster_profile: Literal["gpu", "cpu"] = Field(
        "gpu",
        description="The nodes Argo steps run on: gpu (each step asks for 1 nvidia.com/gpu unless the spec's "
        "resources: say otherwise) or cpu (no GPUs; a spec asking for one is refused).",
    )
    cluster_gpus_per_node: int = Field(
        8, ge=1, description="GPUs of the cluster's largest nodes: a spec asking more per pod is refused."
    )
    argo_server: str | None = Field(None, description="Argo Server URL, e.g. https://argo.example.org:2746.")
    argo_namespace: str = Field("argo", description="Kubernetes namespace the workflows run in.")
    argo_token: SecretStr | None = Field(
        None, description="Bearer token for the Argo Server (sent only in the Authorization header)."
    )
    argo_s3_endpoint: str | None = Field(
        None,
        description="The S3 endpoint as pods reach it, when it differs from AWS's (a lab MinIO: "
        "http://minio.argo.svc:9000); training pods upload their checkpoints there.",
    )
    argo_poll_s: float = Field(
        5.0, gt=0, description="Seconds between two reads of a followed Argo workflow."
    )
    argo_service_account: str = Field(
        "lamflow-workflow", description="ServiceAccount of the workflow pods (deploy/ creates it)."
    )
    store_prefix: str = Field(
        "lamflow", description="Key prefix of staged inputs in rendered manifests' artifact repository."
    )
    store: str = Field(
        str(Path("~/.local/share/lamflow/store").expanduser()),
        description="Artifact store shared by all runs (step cache, model registry, pushed datasets): a "
        "directory or s3://bucket/prefix (endpoint and credentials from the standard AWS chain).",
    )
    cache_dir: Path = Field(
        Path("~/.cache/lamflow").expanduser(),
        description="This machine's copies of remote datasets, one folder per content digest.",
    )
    cache: bool = Field(True, description="Reuse stored results of steps with identical inputs.")
    report: bool = Field(
        True, description="Write the run's report (<run-dir>/report/: metrics, plots, index.html) at its end."
    )
    group: bool = Field(
        True,
        description="Run short steps (freeze, change-bias, test) of a step group in one worker process; "
        "false gives every step a process of its own (for debugging).",
    )
    fork_steps: bool = Field(
        True,
        description="Start each step that runs in a process of its own (training, MD) by forking a "
        "prestarted interpreter that has dflow and the ops imported, instead of a fresh `python` (about "
        "1 s less per step); false starts a fresh interpreter for each (for debugging).",
    )
    python: str = Field(sys.executable, description="Interpreter that runs each local step.")
    local_workers: int | None = Field(
        None,
        ge=1,
        description="At most this many steps at once on the local engine (default: as many as the GPUs and "
        "cores allow, see local_train_cores); 1 runs one step at a time, each training step with every core.",
    )
    local_gpus: int | None = Field(
        None,
        ge=0,
        description="GPUs local runs may use (default: those CUDA_VISIBLE_DEVICES lists, else every GPU the "
        "NVIDIA driver shows); 0 runs every step on CPU.",
    )
    local_cores: int | None = Field(
        None, ge=1, description="Cores local runs may use (default: every core this process may run on)."
    )
    local_train_gpus: int | None = Field(
        None,
        ge=0,
        description="GPUs of each training step on the local engine (default: 1 where there are GPUs; the "
        "spec's resources.<class>.gpus wins where set; more than 1 trains under torchrun).",
    )
    local_train_cores: int | None = Field(
        None,
        ge=1,
        description="Cores of each training step on the local engine (default: all of them with "
        "local_workers=1; else the cores split evenly between the GPUs; without GPUs half the cores, "
        "at most 4).",
    )
    local_step_gpus: int = Field(
        0, ge=0, description="GPUs of every other local step (MD, model deviation, freeze, test ...)."
    )
    local_step_cores: int = Field(1, ge=1, description="Cores of every other local step.")
