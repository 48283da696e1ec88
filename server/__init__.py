"""The market-data gRPC service.

Two layers: ``server.sim``, the simulation (pure numpy and the standard
library), and the RPC layer on top of it: ``requests`` (request -> plan),
``streaming`` and ``subscriptions`` (delivery), ``wire`` (encoding),
``status`` (errors), ``servicer`` (one method per RPC), ``app`` (wiring).
"""
