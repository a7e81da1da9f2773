"""DeePMD-kit warnings that change the meaning of a result, found in a step's log, one line each.

The patterns are DeePMD-kit 3.2's own messages (deepmd/utils/finetune.py, update_sel.py,
neighbor_stat.py, pt/utils/dataloader.py, pt/train/training.py) and a NaN in the training log.
"""

from __future__ import annotations

import re

PATTERNS: tuple[tuple[re.Pattern[str], str], ...] = (
    (
        re.compile(r"not in the pretrained model and related params will be randomly initialized: (.*?)\.?$"),
        "types not in the pretrained model are randomly initialised: {0}",
    ),
    (
        re.compile(r"sel of type (\d+) is not enough!.*?not less than (\d+), but you set it to (\d+)"),
        "neighbour list overflow: sel of type {0} is {2}, the data need {1} (accuracy suffers)",
    ),
    (
        re.compile(r"Atoms with no neighbors found in (.*?)\. Please"),
        "atoms with no neighbours within rcut in {0}",
    ),
    (
        re.compile(r"Remove (\d+) systems with more than (\S+) atoms"),
        "{0} data systems skipped (more than {1} atoms)",
    ),
    (re.compile(r"Checkpoint loaded non-strictly\. (.*)$"), "checkpoint loaded non-strictly: {0}"),
    (re.compile(r"batch\s+\d+:.*\bnan\b", re.IGNORECASE), "NaN in the training loss"),
)


def scan_warnings(log_text: str) -> list[str]:
    """The meaning-changing warnings in ``log_text``, each once, in order of appearance."""
    found: list[str] = []
    for line in log_text.splitlines():
        for pattern, template in PATTERNS:
            match = pattern.search(line)
            if match:
                message = template.format(*(g.strip() for g in match.groups()))
                if message not in found:
                    found.append(message)
    return found
