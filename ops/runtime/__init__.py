"""How a step runs, whatever it does: typed op contracts (``contract``), the names and layout of the files a
step writes (``files``), what several ops share (``common``: work directory, ``dp`` as a step, JSON
outputs), the long-lived step worker, the step launcher that forks the steps of their own, and the command
such a step runs (``worker``, ``launcher``, ``worker_client``), the DeePMD-kit warnings found in a
step's log (``warnings``), S3 clients that share one parse of botocore's models (``s3``), and the
third-party packages imported on first use rather than with dflow (``deferred``).

May import :mod:`lamflow.ops.dp` and itself; nothing else in ``lamflow.ops`` (the worker and the launcher
pre-import the step ops by name, at run time, so that their steps skip that cost).
"""
