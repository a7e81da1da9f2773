"""DeePMD-kit warnings that change a result's meaning are found in a step log, one line each."""

from __future__ import annotations

from lamflow.ops.runtime.warnings import scan_warnings

LOG = """\
[2026-11-24 10:00:00,000] DEEPMD INFO    DeePMD version: 3.2.0
[2026-11-24 10:00:01,000] DEEPMD WARNING These types are not in the pretrained model and related params will be randomly initialized: ['Ti'].
[2026-11-24 10:00:02,000] DEEPMD WARNING sel of type 1 is not enough! The expected value is not less than 48, but you set it to 40. The accuracy of your model may get worse.
[2026-11-24 10:00:03,000] DEEPMD WARNING Atoms with no neighbors found in /data/sys1. Please make sure it's what you expected.
[2026-11-24 10:00:04,000] DEEPMD WARNING Remove 2 systems with more than 512 atoms
[2026-11-24 10:00:05,000] DEEPMD INFO    batch     100: trn: rmse = nan, rmse_e = nan, rmse_f = 1.2e+00, lr = 1.0e-03
[2026-11-24 10:00:06,000] DEEPMD WARNING These types are not in the pretrained model and related params will be randomly initialized: ['Ti'].
[2026-11-24 10:00:07,000] DEEPMD WARNING You can use the environment variable DP_INFER_BATCH_SIZE to control the batch size
"""  # noqa: E501


def test_each_warning_once_in_order():
    assert scan_warnings(LOG) == [
        "types not in the pretrained model are randomly initialised: ['Ti']",
        "neighbour list overflow: sel of type 1 is 40, the data need 48 (accuracy suffers)",
        "atoms with no neighbours within rcut in /data/sys1",
        "2 data systems skipped (more than 512 atoms)",
        "NaN in the training loss",
    ]


def test_harmless_lines_are_not_warnings():
    assert scan_warnings("DEEPMD INFO    batch 100: trn: rmse = 1.0\nShared params of a and b!\n") == []
