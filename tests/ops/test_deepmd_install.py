"""The environment the setup builds: DeePMD-kit's PyTorch backend imports with its custom ops and runs."""

from __future__ import annotations

import subprocess

from lamflow.ops.dp import dp_program


def test_custom_op_library_loads():
    from deepmd.pt.cxx_op import ENABLE_CUSTOMIZED_OP

    assert ENABLE_CUSTOMIZED_OP, "DeePMD-kit was not built against the installed torch"


def test_dp_pytorch_backend_help_runs():
    result = subprocess.run([*dp_program(), "--pt", "-h"], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    for sub in ("train", "freeze", "test", "change-bias", "compress"):
        assert sub in result.stdout
