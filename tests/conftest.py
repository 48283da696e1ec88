"""Shared fixtures: a real server on an ephemeral loopback port, and channels to it.

The server runs on its own event loop in a background thread, so tests talk
to it over the network with the ordinary synchronous gRPC API, as users do.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest

from client import MarketDataClient
from marketdata.v1 import market_data_pb2_grpc
from server.app import RunningServer, ServerOptions, start_server
from server.limits import FeedLimits, Limits
from server.observability import ObservabilityOptions
from server.sim.universe import DEFAULT_MARKET, MarketConfig

REPO_ROOT = Path(__file__).resolve().parent.parent


class ServerThread:
    """A server started on a private event loop in a daemon thread."""

    def __init__(
        self,
        limits: Limits | None = None,
        wire: str = "fast",
        market: MarketConfig | None = None,
        market_clock: bool = False,
        feed_limits: FeedLimits | None = None,
        observability: ObservabilityOptions | None = None,
        **options: object,
    ) -> None:
        """The market clock is off unless asked for: tests advance it with ``advance_market``.
        ``options`` are further ServerOptions (TLS, tokens, connection limits)."""
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self.loop.run_forever, name="test-server", daemon=True)
        self._thread.start()
        self.running: RunningServer = self.call(
            start_server(
                ServerOptions(
                    host="127.0.0.1",
                    port=0,
                    limits=limits or Limits(),
                    wire=wire,
                    market=market or DEFAULT_MARKET,
                    market_clock=market_clock,
                    feed_limits=feed_limits or FeedLimits(),
                    observability=observability or ObservabilityOptions(),
                    **options,
                )
            )
        )
        self.target = f"127.0.0.1:{self.running.port}"

    def call(self, coro, timeout: float = 30.0):
        """Run a coroutine on the server's loop and wait for its result."""
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def submit(self, coro):
        """Start a coroutine on the server's loop without waiting for it."""
        return asyncio.run_coroutine_threadsafe(coro, self.loop)

    def stop(self, grace: float = 0.0) -> None:
        if self.loop.is_running():
            self.call(self.running.shutdown(grace))
            self.loop.call_soon_threadsafe(self.loop.stop)
            self._thread.join(timeout=10)
        self.loop.close()

    def advance_market(self, ticks: int = 1) -> None:
        """Tick the live market ``ticks`` times, on the server's own loop."""

        async def advance() -> None:
            for _ in range(ticks):
                self.running.servicer.feed.advance()

        self.call(advance())

    @property
    def tracker(self):
        return self.running.servicer.tracker


def free_port() -> int:
    """A port free on 127.0.0.1 a moment ago, for a flag that reads 0 as "off"."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def call_on_new_connections(target: str, done, most: int = 64) -> int:
    """GetGbmPrices calls on ``target``, each on a connection of its own, until ``done()`` says
    enough or ``most`` were made; how many were made. Workers sharing a port each get the new
    connections the kernel gives them; without a local subchannel pool, gRPC could carry the
    calls of successive clients on one connection."""
    calls = 0
    while calls < most and not done():
        with MarketDataClient(target, options=[("grpc.use_local_subchannel_pool", 1)]) as md:
            assert md.get_gbm_prices(periods=5, start_price=70, mu=0.05, sigma=0.3).prices[0] == 70.0
        calls += 1
    return calls


def http_off(args: tuple[str, ...] | list[str]) -> tuple[str, ...]:
    """Server flags with the HTTP port off unless they set it: its default, 8080, is one port
    for every server of the suite (and of anyone else on the machine)."""
    if any(a == "--http-port" or a.startswith("--http-port=") for a in args):
        return tuple(args)
    return ("--http-port", "0", *args)


@contextlib.contextmanager
def server_process(python: str, *flags: str) -> Iterator[tuple[subprocess.Popen, str]]:
    """``python -m server --port 0 FLAGS`` as a process of its own: the process, and the target its
    "listening on HOST:PORT" line names (written as the server writes it). Killed on the way out unless
    the test stopped it; stderr stays open for the test to read."""
    proc = subprocess.Popen(
        [python, "-m", "server", "--port", "0", *http_off(flags)],
        cwd=REPO_ROOT,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        line = proc.stderr.readline()
        match = re.search(r"listening on (\S+:\d+)", line)
        assert match, line
        yield proc, match[1]
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


@pytest.fixture(scope="session")
def server() -> Iterator[ServerThread]:
    """One server for the tests that only make calls."""
    srv = ServerThread()
    yield srv
    srv.stop()


@pytest.fixture
def fresh_server() -> Iterator[ServerThread]:
    """A server of the test's own, for tests that watch its state or stop it."""
    srv = ServerThread()
    yield srv
    srv.stop()


@pytest.fixture
def channel(server: ServerThread) -> Iterator[grpc.Channel]:
    with grpc.insecure_channel(server.target) as ch:
        yield ch


@pytest.fixture
def stub(channel: grpc.Channel) -> market_data_pb2_grpc.MarketDataServiceStub:
    return market_data_pb2_grpc.MarketDataServiceStub(channel)


@pytest.fixture
def md(server: ServerThread) -> Iterator[MarketDataClient]:
    with MarketDataClient(server.target) as client:
        yield client


@pytest.fixture
def python() -> str:
    return sys.executable
