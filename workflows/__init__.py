"""The client side of lamflow: spec, resolve, compile, stages, engines, stores, api and CLI
(docs/architecture.md). Importing it imports :mod:`lamflow.ops` first, whose ``__init__`` defers the
packages dflow imports but lamflow uses only on a cluster (:mod:`lamflow.ops.runtime.deferred`)."""

import lamflow.ops  # noqa: F401
