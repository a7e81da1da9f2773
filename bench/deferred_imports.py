"""Benchmark: packages deferred until first use (``ops/runtime/deferred.py``: ``kubernetes``, which dflow
imports whole) against importing them up front, on ``lamflow validate SPEC`` as fresh processes,
alternating, in one run.

    .venv/bin/python bench/deferred_imports.py [SPEC] [--runs 12]

SPEC defaults to examples/demo.yaml; it is validated once first, so the rest are second validates of
unchanged data (issue 25's case). The baseline imports every deferred package before lamflow, as dflow
did before, which leaves ``defer`` nothing to do.
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from cli_gc import compare  # noqa: E402

UP_FRONT = "import kubernetes\n"  # ops/runtime/deferred.DEFERRED, imported as before


def main() -> None:
    compare(UP_FRONT, ("imported up front", "deferred"), "deferred / up front")


if __name__ == "__main__":
    main()
