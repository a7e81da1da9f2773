"""User-facing errors: one line naming the file and the YAML path, and the CLI exit codes."""

from __future__ import annotations

EXIT_OK = 0
EXIT_RUN_FAILED = 1
EXIT_BAD_INPUT = 2
EXIT_HELD_BACK = 3  # a promotion gate kept the current champion
EXIT_GATE_FAILED = 4  # a run succeeded but a transfer study's gate failed (for CI)


class LamflowError(Exception):
    """An error with a one-line message meant for the user (never shown with a traceback)."""

    exit_code = EXIT_RUN_FAILED


class SpecError(LamflowError):
    """Bad input: ``<file>: <yaml.path>: <message>``."""

    exit_code = EXIT_BAD_INPUT

    def __init__(self, file: str, path: str | None, message: str) -> None:
        self.file = file
        self.path = path
        self.message = message
        super().__init__(f"{file}: {path}: {message}" if path else f"{file}: {message}")


class RunError(LamflowError):
    """A run failed or cannot be found."""


class UsageError(LamflowError):
    exit_code = EXIT_BAD_INPUT


class HeldBack(LamflowError):
    """A model was not promoted: the gate says it does not beat the champion."""

    exit_code = EXIT_HELD_BACK
