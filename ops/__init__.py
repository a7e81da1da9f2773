"""Code that runs inside a workflow step (locally or in a pod built from images/).

Every DeePMD-kit call goes through :func:`lamflow.ops.dp.run_dp`. Modules here must not import the client
side (``lamflow.workflows``) nor assume local paths: inputs arrive as dflow artifacts and parameters.
"""
