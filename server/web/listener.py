"""The HTTP port: uvicorn's HTTP/1.1 protocol on the gRPC server's event loop, with the
limits a port open to strangers needs and uvicorn does not set by itself.

uvicorn's ``Server`` is built to own a process (signals, its own loop, its own logging);
this process already has one, so only its protocol is used, on a socket this module binds,
and starting and stopping are the few lines below.

Limits (their flags are the gRPC port's; the README's Limits table says so):
- connections: at most --max-connections open at once; one more is closed at once;
- a new connection must start a request within --handshake-timeout-seconds (after its TLS
  handshake, which has the same bound), and a request's head (line and headers) must be
  whole within --handshake-timeout-seconds of its first byte; heads are at most 64 KiB;
- a request body still arriving after its reply must end within --handshake-timeout-seconds;
- a connection with no request in progress is closed after --max-connection-idle-seconds;
- a reader that takes nothing is reset (``marketdata.abort``), so the kernel drops what it
  still held for it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import ssl
import struct

from uvicorn.config import Config
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol
from uvicorn.server import ServerState

from ..limits import ConnectionLimits

_LOGGER = logging.getLogger(__name__)

MAX_HEAD_BYTES = 64 * 1024
# uvicorn logs a warning for each malformed request; strangers can send many.
for _name in ("uvicorn", "uvicorn.error", "uvicorn.access"):
    logging.getLogger(_name).setLevel(logging.ERROR)


class _Protocol(HttpToolsProtocol):
    """uvicorn's HTTP/1.1 protocol, with a deadline on request heads and a cap on their size.

    A head that arrives whole in one read (nearly all do) costs no timer: the deadline is
    armed only when a read ends inside a head."""

    limits: ConnectionLimits  # set on the subclass made for one port

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._in_head = False
        self._head_bytes = 0
        self._head_timer: asyncio.TimerHandle | None = None
        if len(self.connections) > self.limits.max_connections:
            _LOGGER.debug("refused an HTTP connection: --max-connections %d", self.limits.max_connections)
            transport.abort()
            return
        # Until its first byte, a new connection is idle: uvicorn's keep-alive timer covers that.
        self.timeout_keep_alive_task = self.loop.call_later(
            self.limits.handshake_timeout_seconds, self.timeout_keep_alive_handler
        )

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        super().connection_lost(exc)

    def _disarm(self) -> None:
        timer = getattr(self, "_head_timer", None)
        if timer is not None:
            timer.cancel()
            self._head_timer = None

    def data_received(self, data: bytes) -> None:
        super().data_received(data)
        if self._in_head and self._head_timer is None and not self.transport.is_closing():
            self._head_timer = self.loop.call_later(self.limits.handshake_timeout_seconds, self._head_late)

    def _count(self, size: int) -> None:
        self._head_bytes += size
        if self._head_bytes > MAX_HEAD_BYTES:
            raise _HeadTooLarge  # the parser stops; uvicorn answers 400 and closes

    def on_url(self, url: bytes) -> None:
        self._count(len(url))
        super().on_url(url)

    def on_header(self, name: bytes, value: bytes) -> None:
        self._count(len(name) + len(value))
        super().on_header(name, value)

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._in_head, self._head_bytes = True, 0

    def _head_late(self) -> None:
        self._head_timer = None
        if self._in_head and not self.transport.is_closing():
            _LOGGER.debug("closed an HTTP connection whose request head was not whole in time")
            self.transport.close()

    def on_response_complete(self) -> None:
        # A request whose body is still arriving after its reply (the route did not need it, or
        # gave up on it) must end within the head's deadline: every byte of it cancels
        # uvicorn's idle timer, so a trickle would keep the connection for good.
        unfinished = self.cycle is not None and self.cycle.more_body
        super().on_response_complete()
        if unfinished and self._head_timer is None and not self.transport.is_closing():
            self._head_timer = self.loop.call_later(self.limits.handshake_timeout_seconds, self._body_late)

    def _body_late(self) -> None:
        self._head_timer = None
        if self.cycle is not None and self.cycle.more_body and not self.transport.is_closing():
            _LOGGER.debug("closed an HTTP connection whose request body did not end in time")
            self.transport.close()

    def on_message_complete(self) -> None:
        super().on_message_complete()
        if not self._in_head:
            self._disarm()

    def _drop(self) -> None:
        """Close at once, and have the kernel discard what it still holds for the reader
        (a reset): a reader that stopped would otherwise be sent it at its own pace."""
        sock = self.transport.get_extra_info("socket")
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        self.transport.abort()

    def on_headers_complete(self) -> None:
        self._in_head = False
        self._disarm()
        # The app drops a reader that takes nothing (abort), and times only writes that wait.
        extensions = self.scope.setdefault("extensions", {})
        extensions["marketdata.abort"] = self._drop
        extensions["marketdata.flow"] = self.flow
        super().on_headers_complete()


class _HeadTooLarge(Exception):
    """A request line and headers over MAX_HEAD_BYTES."""


class HttpListener:
    """Serves an ASGI app on one bound socket until ``stop``."""

    def __init__(
        self,
        app,
        sock: socket.socket,
        limits: ConnectionLimits,
        ssl_context: ssl.SSLContext | None,
    ) -> None:
        idle = limits.max_connection_idle_seconds or 24 * 3600.0
        self._config = Config(
            app,
            lifespan="off",
            http="httptools",
            log_config=None,
            access_log=False,
            proxy_headers=False,  # the peer is the socket's: no header can claim to be another
            server_header=False,
            date_header=False,
            timeout_keep_alive=idle,
        )
        self._config.load()
        self._protocol = type("HttpProtocol", (_Protocol,), {"limits": limits})
        self._sock, self._ssl, self._limits = sock, ssl_context, limits
        self._state = ServerState()
        self._server: asyncio.Server | None = None

    @property
    def port(self) -> int:
        return self._sock.getsockname()[1]

    async def start(self) -> None:
        config, state = self._config, self._state

        def protocol() -> asyncio.Protocol:
            return self._protocol(config=config, server_state=state, app_state={})

        self._server = await asyncio.get_running_loop().create_server(
            protocol,
            sock=self._sock,
            ssl=self._ssl,
            backlog=1024,
            ssl_handshake_timeout=self._limits.handshake_timeout_seconds if self._ssl else None,
        )

    async def stop(self, grace: float) -> None:
        """Stop accepting, let responses in progress end within ``grace`` seconds, then cancel
        what is left (the app ends its endless ones, subscriptions, itself first)."""
        if self._server is None:
            return
        self._server.close()
        for connection in list(self._state.connections):
            connection.shutdown()  # idle ones close now, busy ones after their response
        if self._state.tasks:
            await asyncio.wait(list(self._state.tasks), timeout=grace)
        # What is left is cut: connections first, so each response still running sees its
        # client gone and ends quietly; then any task that did not.
        for connection in list(self._state.connections):
            connection.transport.abort()
        if self._state.tasks:
            await asyncio.wait(list(self._state.tasks), timeout=1.0)
        for task in list(self._state.tasks):
            task.cancel()
