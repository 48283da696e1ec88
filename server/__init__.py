"""The market-data gRPC service.

Two layers: ``server.sim``, the simulation (pure numpy and the standard
library), and the RPC layer on top of it: ``requests`` (request -> plan),
``streaming`` and ``subscriptions`` (delivery), ``wire`` (encoding),
``status`` (errors), ``servicer`` (one method per RPC), ``app`` (wiring).
"""

import os

# gRPC's core logs every failed TLS handshake on stderr at INFO, in its own format: one line
# per stranger's attempt, outside our log's format and level. Its errors still show; an
# operator who wants the rest sets GRPC_VERBOSITY (read when grpc is first imported).
os.environ.setdefault("GRPC_VERBOSITY", "ERROR")
