"""Code that runs inside a workflow step (locally or in a pod built from images/).

The top of this package holds the **step ops**, one module each (``pretrain``, ``finetune``, ``scratch``,
``student``, ``freeze``, ``change_bias``, ``test``, ``compress``, ``evaluate``, ``explore``, ``collect``,
``label``, ``convert``), the in-pod runner of step groups (``group``) and the one seam to DeePMD-kit
(``dp``: every DeePMD-kit call goes through :func:`lamflow.ops.dp.run_dp`). Their module paths are the
image's interface: a rendered manifest names ``lamflow.ops.<op>:<Class>`` and ``lamflow.ops.group``, so
they do not move. What the ops use lives in sub-packages, by concern:

- :mod:`lamflow.ops.runtime`: how a step runs (op contracts, output file layout, the step worker and its
  client, DeePMD-kit warnings in a log);
- :mod:`lamflow.ops.data`: datasets (formats, pre-flight checks, splits and subsets);
- :mod:`lamflow.ops.training`: what training steps share (``input.json``, lcurve, checkpoints, carrying
  checkpoints between pods);
- :mod:`lamflow.ops.evaluation`: frozen models evaluated in-process, and the dummy model errors are put
  next to;
- :mod:`lamflow.ops.dynamics`: molecular dynamics with ASE (exploration and stability runs);
- :mod:`lamflow.ops.active`: the concurrent-learning loop's decisions (an ensemble's model deviation,
  selection between trust levels, convergence);
- :mod:`lamflow.ops.labeling`: labels from a reference method (DFT with PySCF).

A new op is one module at the top; what two ops share goes into the sub-package of its concern. A
sub-package may import ``dp``, ``runtime`` and the sub-packages listed before it, never a step op
(tests/test_layers.py checks this). Nothing here imports the client side (``lamflow.workflows``) or assumes
local paths: inputs arrive as dflow artifacts and parameters.
"""

from lamflow.ops.runtime.deferred import defer_all as _defer_all

_defer_all()  # before anything imports dflow: see lamflow.ops.runtime.deferred
