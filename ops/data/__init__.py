"""Datasets inside a step and at validate time: formats and pre-flight checks, system lists for ``dp``,
frame digests (``datasets``); reproducible train/test splits and nested subsets (``split``); labelled frames
laid out as a dpdata system, the same for every labeler (``labelled``).

May import :mod:`lamflow.ops.runtime` and itself.
"""
