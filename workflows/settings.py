"""Where and how lamflow runs: a pydantic-settings object (env prefix ``LAMFLOW_``), passed explicitly.

The science lives in the spec; this holds the machine side (run directory, engine, worker count).
"""

from __future__ import annotations

import sys
from pathlib import Path

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="LAMFLOW_", extra="forbid", frozen=True)

    run_root: Path = Field(Path("runs"), description="Runs are created as <run_root>/<run-id>/.")
    engine: str = Field("local", description="Execution engine: local (dflow debug mode, the default).")
    image: str = Field(
        "lamflow-ops:latest", description="Container image of the steps in rendered (Argo) manifests."
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
    group: bool = Field(
        True,
        description="Run short steps (freeze, change-bias, test) of a step group in one worker process; "
        "false gives every step a process of its own (for debugging).",
    )
    python: str = Field(sys.executable, description="Interpreter that runs each local step.")
    local_workers: int = Field(
        1,
        ge=1,
        description="Steps run at once by the local engine. Each DeePMD-kit process already uses every core, "
        "so 1 is fastest on small machines.",
    )
