"""The lamflow spec: pure pydantic models, one module per part (datasets, model, external models, training,
resources, registry, one per stage; ``stages.py`` gathers the stages' sections), and ``parse.py``, which
reads a spec file into them with one-line errors. Nothing here reads datasets or knows the stages' logic.

May import: ``errors``, ``presets``. ``load_spec`` (all of validate) is ``lamflow.workflows.planner``'s.
"""

from lamflow.workflows.spec.spec import Spec

__all__ = ["Spec"]
