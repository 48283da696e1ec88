"""HTTP access to the service: JSON, CSV and Server-Sent Events, and the live page.

Served by the gRPC server's own process and event loop on a second port (--http-port),
through the gRPC server's own method handlers and interceptors (``gateway``).
"""

from __future__ import annotations

import socket
import ssl
from collections.abc import Sequence

import grpc

from ..limits import ConnectionLimits, Limits
from .gateway import Gateway
from .listener import HttpListener
from .routes import HttpApi


def http_listener(
    sock: socket.socket,
    handlers: dict[str, grpc.RpcMethodHandler],
    interceptors: Sequence[grpc.aio.ServerInterceptor],
    service: str,
    limits: Limits,
    connection_limits: ConnectionLimits,
    ssl_context: ssl.SSLContext | None,
    budget,
) -> HttpListener:
    """A listener (not yet started) serving the HTTP routes on the bound socket ``sock``.
    ``budget`` (the servicer's generation pool) bounds the memory of replies held for readers."""
    gateway = Gateway(handlers, interceptors, service)
    api = HttpApi(gateway, connection_limits.handshake_timeout_seconds, limits.stall_seconds, budget)
    return HttpListener(api.app, sock, connection_limits, ssl_context)


__all__ = ["HttpListener", "http_listener"]
