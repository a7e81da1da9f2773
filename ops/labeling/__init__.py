"""Labels for frames a model picked: energies and forces from a reference method. ``pyscf_dft``: real
DFT with PySCF (molecules, no cell), one frame at a time, a frame whose SCF does not converge dropped and
counted. ``command``: an external DFT code run as a command line, frames written and labels read back with
dpdata, every failing frame counted with its reason. The teacher labeler of the distillation stage lives
in :mod:`lamflow.ops.label`.

May import :mod:`lamflow.ops.dp`, :mod:`lamflow.ops.runtime`, :mod:`lamflow.ops.data` and itself.
PySCF (``pip install lamflow[dft]``) is imported where a label is computed, not before.
"""
