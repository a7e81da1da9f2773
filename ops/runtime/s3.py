"""S3 clients for every part of lamflow that reaches S3 (the store, checkpoint sync, the job pods' markers).

A new boto3 ``Session`` parses botocore's JSON service and endpoint models again (~0.1 s of CPU per client
on these machines; measured 149 ms a client against 33 ms with this module): :func:`client` gives each
client a session of its own — its own credentials, region and endpoint from the environment as they are
at that moment, exactly as ``boto3.session.Session().client`` — but one botocore data loader per process,
which keeps what it parsed. The models are files of the installed botocore; nothing in them depends on
the environment.
"""

from __future__ import annotations

import functools
from typing import Any


@functools.lru_cache(maxsize=1)
def _loader() -> Any:
    import botocore.loaders

    return botocore.loaders.create_loader()


def client(config: Any = None) -> Any:
    """A boto3 S3 client with ``config`` (a ``botocore.config.Config``), from a fresh session that reads
    the environment now and a data loader shared by the process."""
    import boto3
    import botocore.session

    core = botocore.session.Session()
    core.register_component("data_loader", _loader())
    return boto3.session.Session(botocore_session=core).client("s3", config=config)
