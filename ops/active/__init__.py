"""What the concurrent-learning loop (issue 24: explore -> select by model deviation -> label -> retrain,
until converged) decides from numbers, kept apart from how its steps run: an ensemble's model deviation
per frame through DeePMD-kit's own code (``deviation``), the picking of frames to label between trust
levels (``select``), and the convergence decision with its reason (``converge``).

May import :mod:`lamflow.ops.dp`, :mod:`lamflow.ops.runtime`, :mod:`lamflow.ops.data`,
:mod:`lamflow.ops.evaluation`, :mod:`lamflow.ops.dynamics` and itself.
"""
