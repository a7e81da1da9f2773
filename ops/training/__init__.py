"""What the training steps (pretrain, finetune, scratch, student) share: their parameters and outputs,
``input.json``, the learning curve (``common``); DeePMD-kit checkpoints read without ``dp`` and the newest
complete one found (``checkpoint``); checkpoints carried from one pod to a retried one (``checkpoint_sync``);
training on several nodes of this machine, and which pod of a job held rank 0 (``distributed``); DeePMD-kit's
data-parallel set-up on CPUs (``cpu_ddp``).

May import :mod:`lamflow.ops.dp`, :mod:`lamflow.ops.runtime`, :mod:`lamflow.ops.data` and itself.
"""
