"""Spec file -> :class:`ResolvedSpec` -> :class:`Plan`: the one package that drives every stage.

``load.load_spec`` parses the file (``spec``), lets each stage check its names (``stages``), reads the data
(``resolve``), runs the stages' guards; ``compiler.build_plan`` lets each stage, in order, add its steps
(pure: no I/O). It stands above ``stages``, ``resolve``, ``compile`` and ``spec``; ``api`` uses it.
"""

from lamflow.workflows.planner.compiler import build_plan
from lamflow.workflows.planner.load import load_spec

__all__ = ["build_plan", "load_spec"]
