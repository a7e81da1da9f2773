"""Resolution: from a parsed spec to what the compiler needs from the file system (datasets found,
converted, checked, split, subset) — :class:`ResolvedSpec`. Between ``spec`` (pure models) and
``compile``; it reads files and runs no stage (``planner`` runs the stages' checks around it).

May import: ``spec``, ``settings``, ``errors``, ``ops``.
"""

from lamflow.workflows.resolve.resolved import ResolvedSpec

__all__ = ["ResolvedSpec"]
