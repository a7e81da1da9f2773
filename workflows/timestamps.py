"""Timestamps as lamflow writes them (UTC, ISO 8601, whole seconds): run summaries and the model registry."""

from __future__ import annotations

from datetime import datetime, timezone


def now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")
