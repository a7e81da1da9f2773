"""What the training steps (pretrain, finetune, scratch, student) share: their parameters and outputs,
``input.json``, the learning curve (``common``); DeePMD-kit checkpoints read without ``dp`` and the newest
complete one found (``checkpoint``); checkpoints carried from one pod to a retried one (``checkpoint_sync``).

May import :mod:`lamflow.ops.dp`, :mod:`lamflow.ops.runtime`, :mod:`lamflow.ops.data` and itself.
"""
