"""Molecular dynamics with ASE on a DeePMD-kit model (``md``): the exploration and stability runs of the
distillation and compression stages, their start structures and the checks that call a frame unphysical.

May import :mod:`lamflow.ops.dp`, :mod:`lamflow.ops.runtime`, :mod:`lamflow.ops.data` and itself.
"""
