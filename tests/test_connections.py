"""Connection limits against a real server: how many, how long idle or old, how they ping."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator

import grpc
import pytest

from marketdata.v1 import market_data_pb2, market_data_pb2_grpc
from server.limits import ConnectionLimits, FeedLimits, Limits
from tests.conftest import REPO_ROOT, ServerThread

BOUND = 30.0  # a generous liveness bound for what should take well under a second


@pytest.fixture
def make_server() -> Iterator:
    started: list[ServerThread] = []

    def make(**limits: object) -> ServerThread:
        srv = ServerThread(connection_limits=ConnectionLimits(**limits))
        started.append(srv)
        return srv

    yield make
    for srv in started:
        srv.stop()


def _channel(target: str, *options: tuple[str, object]) -> grpc.Channel:
    """A channel with a connection of its own (gRPC shares connections between equal channels)."""
    return grpc.insecure_channel(target, options=[("grpc.use_local_subchannel_pool", 1), *options])


def _last_prices(channel: grpc.Channel) -> grpc.StatusCode:
    try:
        market_data_pb2_grpc.MarketDataServiceStub(channel).GetLastPrices(
            market_data_pb2.GetLastPricesRequest(), timeout=10
        )
    except grpc.RpcError as error:
        return error.code()
    return grpc.StatusCode.OK


class _States:
    """Records a channel's connectivity states as gRPC reports them."""

    def __init__(self, channel: grpc.Channel) -> None:
        self.seen: list[grpc.ChannelConnectivity] = []
        self._changed = threading.Condition()
        channel.subscribe(self._on_change, try_to_connect=False)

    def _on_change(self, state: grpc.ChannelConnectivity) -> None:
        with self._changed:
            self.seen.append(state)
            self._changed.notify_all()

    def wait_for(self, state: grpc.ChannelConnectivity, after: int) -> bool:
        """Whether ``state`` is reported after the first ``after`` reports, within BOUND."""
        with self._changed:
            return self._changed.wait_for(lambda: state in self.seen[after:], BOUND)


def test_connections_beyond_max_connections_are_closed_and_others_go_on(make_server):
    srv = make_server(max_connections=2)
    first, second, third = (_channel(srv.target) for _ in range(3))
    try:
        assert _last_prices(first) == grpc.StatusCode.OK
        assert _last_prices(second) == grpc.StatusCode.OK
        assert _last_prices(third) == grpc.StatusCode.UNAVAILABLE
        assert _last_prices(first) == grpc.StatusCode.OK  # the connections held keep working
        second.close()
        # Its place is free again: the third connects once the server has seen the close.
        deadline = time.monotonic() + BOUND
        while _last_prices(third) != grpc.StatusCode.OK:
            assert time.monotonic() < deadline, "the closed connection's place never came back"
    finally:
        for channel in (first, third):
            channel.close()


def test_a_connection_that_never_says_hello_is_closed_after_the_handshake_timeout(make_server):
    srv = make_server(handshake_timeout_seconds=0.2)
    with socket.create_connection(("127.0.0.1", srv.running.port)) as silent:
        silent.settimeout(BOUND)
        received = [silent.recv(1024)]  # the server's HTTP/2 settings, then the close
        while received[-1] and len(received) < 100:
            received.append(silent.recv(1024))
        assert received[-1] == b"", "the server never closed a connection that sent nothing"
    with _channel(srv.target) as channel:
        assert _last_prices(channel) == grpc.StatusCode.OK


def test_an_idle_connection_is_closed_and_the_client_reconnects_on_its_next_call(make_server):
    srv = make_server(max_connection_idle_seconds=0.2)
    with _channel(srv.target) as channel:
        states = _States(channel)
        assert _last_prices(channel) == grpc.StatusCode.OK
        assert states.wait_for(grpc.ChannelConnectivity.READY, after=0)  # reported on gRPC's thread
        ready = states.seen.index(grpc.ChannelConnectivity.READY)
        assert states.wait_for(grpc.ChannelConnectivity.IDLE, after=ready + 1)
        assert _last_prices(channel) == grpc.StatusCode.OK


def test_an_old_connection_is_asked_to_go_and_its_streams_end_after_the_grace(make_server):
    srv = make_server(max_connection_age_seconds=0.2, max_connection_age_grace_seconds=0.2)
    with _channel(srv.target) as channel:
        stub = market_data_pb2_grpc.MarketDataServiceStub(channel)
        subscription = stub.Subscribe(
            market_data_pb2.SubscribeRequest(symbols=["ACME"], heartbeat_seconds=0.05)
        )
        with pytest.raises(grpc.RpcError) as ended:
            for _ in range(int(BOUND / 0.05)):
                next(subscription)
        assert ended.value.code() == grpc.StatusCode.UNAVAILABLE
        assert _last_prices(channel) == grpc.StatusCode.OK  # a new connection takes over


def test_a_client_that_pings_too_often_is_sent_away(make_server):
    srv = make_server(keepalive_min_ping_seconds=10.0)
    pinging = _channel(
        srv.target,
        ("grpc.keepalive_time_ms", 50),
        ("grpc.keepalive_permit_without_calls", 1),
        ("grpc.http2.max_pings_without_data", 0),
    )
    with pinging:
        stub = market_data_pb2_grpc.MarketDataServiceStub(pinging)
        # A subscription with no data flowing (no ticks, heartbeats an hour apart): only pings.
        quiet = stub.Subscribe(market_data_pb2.SubscribeRequest(symbols=["ACME"], heartbeat_seconds=3600))
        assert next(quiet).HasField("snapshot")
        with pytest.raises(grpc.RpcError) as ended:
            next(quiet)
    assert ended.value.code() == grpc.StatusCode.UNAVAILABLE
    assert "too many pings" in ended.value.details().lower()


_FROZEN_CLIENT = """
import sys, grpc
from marketdata.v1 import market_data_pb2, market_data_pb2_grpc
channel = grpc.insecure_channel(sys.argv[1])
stub = market_data_pb2_grpc.MarketDataServiceStub(channel)
events = stub.Subscribe(market_data_pb2.SubscribeRequest(symbols=["ACME"], heartbeat_seconds=3600))
next(events)
print("subscribed", flush=True)
for _ in events:
    pass
"""


def test_a_client_that_stops_answering_pings_loses_its_subscription():
    srv = ServerThread(
        connection_limits=ConnectionLimits(keepalive_seconds=0.2, keepalive_timeout_seconds=0.2),
        limits=Limits(stall_seconds=3600.0),  # only the keepalive can end it
        feed_limits=FeedLimits(),
    )
    client = subprocess.Popen(
        [sys.executable, "-c", _FROZEN_CLIENT, srv.target],
        cwd=REPO_ROOT,
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONPATH": str(REPO_ROOT)},
    )
    feed = srv.running.servicer.feed
    try:
        assert client.stdout.readline() == "subscribed\n"
        assert feed.wait_subscribers(lambda n: n == 1, BOUND)
        os.kill(client.pid, signal.SIGSTOP)  # alive, connected, and silent: it answers no ping
        assert feed.wait_subscribers(lambda n: n == 0, BOUND), "the frozen client kept its subscription"
    finally:
        client.kill()
        client.wait()
        srv.stop()


def test_connection_limits_refuse_nonsense():
    for bad in (
        {"max_connections": 0},
        {"handshake_timeout_seconds": 0},
        {"max_connection_idle_seconds": -1},
        {"max_connection_age_seconds": 1e9},
        {"keepalive_seconds": 0},
    ):
        with pytest.raises(ValueError, match=next(iter(bad))):
            ConnectionLimits(**bad)
    options = dict(
        ConnectionLimits(max_connection_age_seconds=300, max_connection_age_grace_seconds=0).channel_options()
    )
    assert options["grpc.max_connection_age_ms"] == 300_000
    assert "grpc.max_connection_age_grace_ms" not in options  # 0: open calls run to their end
