"""Frozen models evaluated in-process on labelled frames (``predict``: drift checks, the distillation
report) and the dummy model that knows only the chemical formula (``baseline``), which every error is put
next to; a property model's test read per component, next to a dummy that predicts the train mean
(``properties``).

May import :mod:`lamflow.ops.dp`, :mod:`lamflow.ops.runtime`, :mod:`lamflow.ops.data` and itself.
"""
