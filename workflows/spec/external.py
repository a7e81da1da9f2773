"""``models:`` — external models (a released DPA-2 checkpoint, a frozen model from elsewhere), declared
once and referenced by every stage as ``models.<name>``: tested, fine-tuned, studied, used as a teacher."""

from __future__ import annotations

from pydantic import Field

from lamflow.workflows.spec.base import SpecModel, SpecPath


class ExternalModelSpec(SpecModel):
    file: SpecPath = Field(
        description="A DeePMD-kit training checkpoint (.pt: can also be fine-tuned) or frozen model (.pth), "
        "relative to the spec file."
    )
    head: str | None = Field(
        None,
        description="The head of a multi-task checkpoint to use (required for one; a frozen model and a "
        "single-task checkpoint have none).",
    )
