"""--metrics-port: Prometheus text at /metrics, scraped over HTTP as Prometheus would, moving
as calls are made; the interceptor's status codes for every way a call can end."""

from __future__ import annotations

import asyncio
import logging
import os
import re
import signal
import socket
import time
import urllib.request
from collections.abc import Callable, Iterator

import grpc
import pytest
from prometheus_client import CollectorRegistry
from prometheus_client.parser import text_string_to_metric_families

from client import MarketDataClient
from marketdata.v1 import market_data_pb2 as pb
from marketdata.v1 import market_data_pb2_grpc
from server import metrics
from server.limits import FeedLimits, Limits
from server.metrics import MAX_SCRAPES, ServiceMetrics, serve_metrics
from server.observability import ObservabilityOptions, ObserveCalls
from tests.conftest import ServerThread
from tests.server_process import ServerProcess

SERVICE = "marketdata.v1.MarketDataService"
Samples = dict[tuple[str, frozenset], float]
LISTENING = r"\[(\d+)\] server\.app: listening on 127\.0\.0\.1:(\d+)"
ACCESS = r"\[(\d+)\] server\.access: /marketdata\.v1\.MarketDataService/GetGbmPrices OK"


def scrape(port: int) -> Samples:
    """Every sample /metrics shows, by name and labels."""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as reply:
        assert reply.status == 200
        assert reply.headers["Content-Type"].startswith("text/plain")
        text = reply.read().decode()
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def value(samples: Samples, name: str, **labels: str) -> float:
    """A sample's value; 0 for a series not shown yet (a labelled counter before its first call)."""
    return samples.get((name, frozenset(labels.items())), 0.0)


def grpc_labels(method: str, grpc_type: str = "unary", service: str = SERVICE) -> dict[str, str]:
    return {"grpc_type": grpc_type, "grpc_service": service, "grpc_method": method}


def wait_for_samples(port: int, holds: Callable[[Samples], bool], timeout: float = 30) -> Samples:
    """Scrape until ``holds`` is true of the samples; the last scrape either way. A call ends
    on the server a little after its client saw it end when it was aborted or cancelled:
    gRPC sends the status of an abort before the handler's exception reaches the observer."""
    deadline = time.monotonic() + timeout
    while True:
        samples = scrape(port)
        if holds(samples) or time.monotonic() > deadline:
            return samples
        time.sleep(0.02)  # a poll interval: the result is checked, not assumed


@pytest.fixture
def observed() -> Iterator[ServerThread]:
    """A server with /metrics on a free port; one price stream per connection."""
    srv = ServerThread(
        limits=Limits(max_streams_per_peer=1), observability=ObservabilityOptions(metrics_port=0)
    )
    yield srv
    srv.stop()


@pytest.fixture
def endpoint() -> Iterator[metrics.MetricsEndpoint]:
    """/metrics alone, on a free loopback port, serving an empty registry."""
    served = serve_metrics("127.0.0.1", 0, CollectorRegistry())
    yield served
    served.close()


def half_requests(port: int, count: int) -> list[socket.socket]:
    """``count`` connections that each send a request line and then nothing."""
    connections = []
    for _ in range(count):
        connection = socket.create_connection(("127.0.0.1", port), timeout=30)
        connection.sendall(b"GET /metrics HTTP/1.1\r\n")
        connections.append(connection)
    return connections


def test_metrics_serve_a_few_connections_at_once_and_close_the_rest(endpoint, monkeypatch):
    """Idle connections beyond MAX_SCRAPES are closed unanswered rather than each given a
    thread (thousands of those starved the gRPC server's health checks); once the idle
    ones go, a scrape is served again."""
    monkeypatch.setattr(metrics, "SCRAPE_IDLE_SECONDS", 120.0)  # the idle ones stay put
    idle = half_requests(endpoint.port, MAX_SCRAPES)
    try:
        with socket.create_connection(("127.0.0.1", endpoint.port), timeout=30) as extra:
            assert extra.recv(100) == b""  # closed, long before any idle one could time out
    finally:
        for connection in idle:
            connection.close()
    deadline = time.monotonic() + 30
    while True:  # the slots come back as the server sees the idle ones gone
        try:
            scrape(endpoint.port)
            break
        except OSError:
            assert time.monotonic() < deadline, "/metrics never answered again"
            time.sleep(0.02)  # a poll interval: the result is checked, not assumed


def test_metrics_close_a_quiet_connection_without_a_traceback(endpoint, monkeypatch, capfd):
    monkeypatch.setattr(metrics, "SCRAPE_IDLE_SECONDS", 0.2)
    (quiet,) = half_requests(endpoint.port, 1)
    with quiet:
        assert quiet.recv(100) == b""
    scrape(endpoint.port)
    assert "Traceback" not in capfd.readouterr().err


def gbm(**fields) -> pb.GbmRequest:
    return pb.GbmRequest(**{"start_price": 70.0, "delta": 1.0, **fields})


def test_grpc_metrics_count_calls_messages_codes_and_time(observed):
    port = observed.running.observability.metrics_port
    before = scrape(port)
    assert value(before, "grpc_server_started_total", **grpc_labels("GetGbmPrices")) == 0
    with grpc.insecure_channel(observed.target) as channel:
        stub = market_data_pb2_grpc.MarketDataServiceStub(channel)
        stub.GetGbmPrices(gbm(periods=5, seed=1))
        with pytest.raises(grpc.RpcError) as bad:
            stub.GetGbmPrices(gbm(periods=0))
        assert bad.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        chunks = list(stub.StreamGbmPrices(gbm(periods=300, chunk_size=100)))
        assert len(chunks) == 3
    unary, stream = grpc_labels("GetGbmPrices"), grpc_labels("StreamGbmPrices", "server_stream")
    after = wait_for_samples(
        port, lambda s: value(s, "grpc_server_handled_total", **unary, grpc_code="INVALID_ARGUMENT") == 1
    )

    assert value(after, "grpc_server_started_total", **unary) == 2
    assert value(after, "grpc_server_handled_total", **unary, grpc_code="OK") == 1
    assert value(after, "grpc_server_handled_total", **unary, grpc_code="INVALID_ARGUMENT") == 1
    assert value(after, "grpc_server_msg_received_total", **unary) == 2
    assert value(after, "grpc_server_msg_sent_total", **unary) == 1
    assert value(after, "grpc_server_handling_seconds_count", **unary) == 2
    assert value(after, "grpc_server_handling_seconds_sum", **unary) > 0
    assert value(after, "grpc_server_handling_seconds_bucket", **unary, le="+Inf") == 2

    assert value(after, "grpc_server_started_total", **stream) == 1
    assert value(after, "grpc_server_msg_received_total", **stream) == 1
    assert value(after, "grpc_server_msg_sent_total", **stream) == 3
    assert value(after, "grpc_server_handled_total", **stream, grpc_code="OK") == 1
    assert value(after, "marketdata_values_generated_total") == 5 + 300
    assert value(after, "process_resident_memory_bytes") > 0  # the process collector is there too


def test_service_metrics_follow_streams_refusals_and_subscribers(observed):
    port = observed.running.observability.metrics_port
    stream = grpc_labels("StreamGbmPrices", "server_stream")
    refused = {"limit": "max-streams-per-peer"}
    with grpc.insecure_channel(observed.target) as channel:
        stub = market_data_pb2_grpc.MarketDataServiceStub(channel)
        paced = stub.StreamGbmPrices(gbm(periods=1000, ticks_per_second=1, chunk_size=1))
        next(paced)  # open: it holds the connection's one stream
        with pytest.raises(grpc.RpcError) as second:
            next(stub.StreamGbmPrices(gbm(periods=5)))
        assert second.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        exhausted = {**stream, "grpc_code": "RESOURCE_EXHAUSTED"}
        samples = wait_for_samples(port, lambda s: value(s, "grpc_server_handled_total", **exhausted) == 1)
        assert value(samples, "marketdata_open_streams") == 1
        assert value(samples, "marketdata_requests_refused_total", **refused) == 1
        assert value(samples, "grpc_server_handled_total", **stream, grpc_code="RESOURCE_EXHAUSTED") == 1

        paced.cancel()
        samples = wait_for_samples(
            port, lambda s: value(s, "grpc_server_handled_total", **stream, grpc_code="CANCELLED") == 1
        )
        assert value(samples, "grpc_server_handled_total", **stream, grpc_code="CANCELLED") == 1
        assert value(samples, "marketdata_open_streams") == 0

        subscription = stub.Subscribe(pb.SubscribeRequest(symbols=["ACME"]))
        next(subscription)  # the snapshot
        # 40 ticks in one go, before the subscription's handler can send one: a buffer of 16
        # is dropped at the 17th and the 33rd, keeping the newest each time.
        observed.advance_market(40)
        samples = scrape(port)
        assert value(samples, "marketdata_subscribers") == 1
        assert value(samples, "marketdata_market_sequence") == 40
        assert value(samples, "marketdata_conflated_updates_total") == 32
        subscription.cancel()
        samples = wait_for_samples(port, lambda s: value(s, "marketdata_subscribers") == 0)
        assert value(samples, "marketdata_subscribers") == 0

        books = pb.DataSubscription(type=pb.ORDER_BOOK, symbols=["ACME", "GLOBEX"])
        book_subscription = stub.Subscribe(pb.SubscribeRequest(data=[books]))
        next(book_subscription)  # the books, whole
        assert value(scrape(port), "marketdata_book_subscriptions") == 2
        book_subscription.cancel()
        samples = wait_for_samples(port, lambda s: value(s, "marketdata_book_subscriptions") == 0)
        assert value(samples, "marketdata_book_subscriptions") == 0

        change = pb.SubscriptionRequest(subscribe=pb.SymbolList(symbols=["ACME", "NOPE"]))
        managed = stub.ManageSubscription(iter([change]))
        next(managed), next(managed)  # the status of each symbol, then the snapshot of ACME
        managed.cancel()
        bidi = grpc_labels("ManageSubscription", "bidi_stream")
        samples = wait_for_samples(
            port, lambda s: value(s, "grpc_server_handled_total", **bidi, grpc_code="CANCELLED") == 1
        )
        assert value(samples, "grpc_server_handled_total", **bidi, grpc_code="CANCELLED") == 1
        assert value(samples, "grpc_server_msg_received_total", **bidi) == 1
        assert value(samples, "grpc_server_msg_sent_total", **bidi) >= 2
        assert value(samples, "marketdata_subscribers") == 0


def test_a_slow_subscriber_disconnected_is_counted_by_its_limit():
    srv = ServerThread(
        feed_limits=FeedLimits(buffer_ticks=2, slow_policy="disconnect"),
        observability=ObservabilityOptions(metrics_port=0),
    )
    try:
        port = srv.running.observability.metrics_port
        with grpc.insecure_channel(srv.target) as channel:
            events = market_data_pb2_grpc.MarketDataServiceStub(channel).Subscribe(pb.SubscribeRequest())
            next(events)
            srv.advance_market(10)  # past the buffer before the handler sends one
            with pytest.raises(grpc.RpcError) as ended:
                for _ in events:
                    pass
        assert ended.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        subscribe = grpc_labels("Subscribe", "server_stream")
        samples = wait_for_samples(
            port,
            lambda s: value(s, "grpc_server_handled_total", **subscribe, grpc_code="RESOURCE_EXHAUSTED") == 1,
        )
        assert value(samples, "marketdata_calls_ended_by_limit_total", limit="slow-subscriber") == 1
        assert value(samples, "grpc_server_handled_total", **subscribe, grpc_code="RESOURCE_EXHAUSTED") == 1
        assert value(samples, "marketdata_requests_refused_total", limit="slow-subscriber") == 0
    finally:
        srv.stop()


class _Unauthenticated(grpc.aio.ServerInterceptor):
    """Stands for an authentication interceptor inside the observer: it answers calls of
    /t.T/Locked with a handler that aborts."""

    async def intercept_service(self, continuation, details):
        handler = await continuation(details)
        if details.method != "/t.T/Locked":
            return handler

        async def deny(request, context):
            await context.abort(grpc.StatusCode.UNAUTHENTICATED, "no token")

        return grpc.unary_unary_rpc_method_handler(deny)


async def _ok(request, context):
    return b"ok"


async def _set_code(request, context):
    context.set_code(grpc.StatusCode.NOT_FOUND)
    context.set_details("nothing here")
    return b""


async def _boom(request, context):
    raise RuntimeError("a bug")


async def _slow(request, context):
    await asyncio.sleep(60)
    return b""


async def _three(request, context):
    for n in range(3):
        yield b"%d" % n


async def _writes(request, context):
    for n in range(2):
        await context.write(b"%d" % n)


async def _total(requests, context):
    return b"%d" % sum([1 async for _ in requests])


async def _echo(requests, context):
    async for request in requests:
        yield request


HANDLERS = {
    "Ok": grpc.unary_unary_rpc_method_handler(_ok),
    "SetCode": grpc.unary_unary_rpc_method_handler(_set_code),
    "Boom": grpc.unary_unary_rpc_method_handler(_boom),
    "Slow": grpc.unary_unary_rpc_method_handler(_slow),
    "Locked": grpc.unary_unary_rpc_method_handler(_ok),
    "Three": grpc.unary_stream_rpc_method_handler(_three),
    "Writes": grpc.unary_stream_rpc_method_handler(_writes),
    "Total": grpc.stream_unary_rpc_method_handler(_total),
    "Echo": grpc.stream_stream_rpc_method_handler(_echo),
}


def test_the_observer_sees_every_way_a_call_ends(caplog):
    registry = CollectorRegistry()
    metrics = ServiceMetrics(registry)

    def handled(method: str, grpc_type: str, code: str) -> float | None:
        labels = {**grpc_labels(method, grpc_type, "t.T"), "grpc_code": code}
        return registry.get_sample_value("grpc_server_handled_total", labels)

    def count(name: str, method: str, grpc_type: str) -> float | None:
        return registry.get_sample_value(name, grpc_labels(method, grpc_type, "t.T"))

    async def scenario() -> None:
        server = grpc.aio.server(interceptors=[ObserveCalls(metrics, access_log=True), _Unauthenticated()])
        server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler("t.T", HANDLERS),))
        port = server.add_insecure_port("127.0.0.1:0")
        await server.start()
        try:
            async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
                assert await channel.unary_unary("/t.T/Ok")(b"") == b"ok"
                for method, code in [
                    ("SetCode", grpc.StatusCode.NOT_FOUND),
                    ("Boom", grpc.StatusCode.UNKNOWN),
                    ("Locked", grpc.StatusCode.UNAUTHENTICATED),
                    ("Nowhere", grpc.StatusCode.UNIMPLEMENTED),
                ]:
                    with pytest.raises(grpc.RpcError) as failed:
                        await channel.unary_unary(f"/t.T/{method}")(b"")
                    assert failed.value.code() == code
                with pytest.raises(grpc.RpcError) as late:
                    await channel.unary_unary("/t.T/Slow")(b"", timeout=0.2)
                assert late.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
                assert [r async for r in channel.unary_stream("/t.T/Three")(b"")] == [b"0", b"1", b"2"]
                assert [r async for r in channel.unary_stream("/t.T/Writes")(b"")] == [b"0", b"1"]
                assert await channel.stream_unary("/t.T/Total")(iter([b"a", b"b", b"c", b"d"])) == b"4"
                echoed = [r async for r in channel.stream_stream("/t.T/Echo")(iter([b"x", b"y"]))]
                assert echoed == [b"x", b"y"]
                cancelled = channel.unary_unary("/t.T/Slow")(b"")
                deadline = time.monotonic() + 30
                while count("grpc_server_started_total", "Slow", "unary") < 2 < deadline - time.monotonic():
                    await asyncio.sleep(0.01)  # until the server has started it
                cancelled.cancel()
                while handled("Slow", "unary", "CANCELLED") is None and time.monotonic() < deadline:
                    await asyncio.sleep(0.01)  # until the server has seen the cancel
        finally:
            await server.stop(None)

    with caplog.at_level(logging.INFO, logger="server.access"):
        asyncio.run(scenario())

    assert handled("Ok", "unary", "OK") == 1
    assert handled("SetCode", "unary", "NOT_FOUND") == 1
    assert handled("Boom", "unary", "UNKNOWN") == 1
    assert handled("Locked", "unary", "UNAUTHENTICATED") == 1  # refused by the interceptor inside
    assert handled("Slow", "unary", "DEADLINE_EXCEEDED") == 1
    assert handled("Slow", "unary", "CANCELLED") == 1
    assert count("grpc_server_started_total", "Nowhere", "unary") is None  # no such method: not counted
    assert handled("Three", "server_stream", "OK") == 1
    assert count("grpc_server_msg_sent_total", "Three", "server_stream") == 3
    assert count("grpc_server_msg_sent_total", "Writes", "server_stream") == 2
    assert count("grpc_server_msg_received_total", "Total", "client_stream") == 4
    assert count("grpc_server_msg_sent_total", "Total", "client_stream") == 1
    assert count("grpc_server_msg_received_total", "Echo", "bidi_stream") == 2
    assert count("grpc_server_msg_sent_total", "Echo", "bidi_stream") == 2
    assert handled("Echo", "bidi_stream", "OK") == 1
    assert count("grpc_server_handling_seconds_count", "Slow", "unary") == 2

    access = [r for r in caplog.records if r.name == "server.access"]
    codes = {(r.method, r.code) for r in access}
    assert ("/t.T/Locked", "UNAUTHENTICATED") in codes
    assert ("/t.T/Slow", "DEADLINE_EXCEEDED") in codes
    assert len(access) == 10  # every call but the one of no method
    assert all(r.peer.startswith("ipv4:127.0.0.1:") and r.duration >= 0 for r in access)


def free_port() -> int:
    """A port free a moment ago (the command line's --metrics-port 0 means off, not "any")."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def test_with_workers_one_scrape_sees_every_workers_calls(python):
    metrics_port = free_port()
    args = ("--port", "0", "--workers", "2", "--metrics-port", str(metrics_port), "--access-log")
    with ServerProcess(python, *args, "--log-level", "DEBUG", "--grace", "1") as server:
        listening = server.wait_for(LISTENING, count=2)
        pids = {int(m.group(1)) for m in listening}
        target = f"127.0.0.1:{listening[0].group(2)}"
        directory = server.wait_for(r"workers record their metrics in (\S+)")[0].group(1)
        calls = 0
        # Each connection goes to one worker, chosen by the kernel: call until both have served.
        while calls < 64 and set(map(int, re.findall(ACCESS, server.log))) != pids:
            with MarketDataClient(target, options=[("grpc.use_local_subchannel_pool", 1)]) as md:
                md.get_gbm_prices(periods=5, start_price=70, mu=0.05, sigma=0.3)
            calls += 1
            server.wait_for(ACCESS, count=calls)
        assert set(map(int, re.findall(ACCESS, server.log))) == pids, "64 connections, one worker"

        unary = grpc_labels("GetGbmPrices")
        samples = scrape(metrics_port)
        assert value(samples, "grpc_server_started_total", **unary) == calls
        assert value(samples, "grpc_server_handled_total", **unary, grpc_code="OK") == calls
        assert value(samples, "grpc_server_handling_seconds_count", **unary) == calls
        assert value(samples, "marketdata_values_generated_total") == 5 * calls
        assert value(samples, "marketdata_market_sequence") >= 0

        # A worker that dies takes its gauges along, never its counts.
        killed = min(pids)
        os.kill(killed, signal.SIGKILL)
        server.wait_for(r"worker \d restarted as pid \d+")
        samples = scrape(metrics_port)
        assert value(samples, "grpc_server_started_total", **unary) == calls
        # A worker killed while creating its file leaves it empty; the scrape still answers.
        with open(os.path.join(directory, "counter_4194305.db"), "xb"):  # past any pid_max
            pass
        samples = scrape(metrics_port)
        assert value(samples, "grpc_server_started_total", **unary) == calls
        assert not any(name.endswith(f"_{killed}.db") and "live" in name for name in os.listdir(directory))
        assert server.stop() == 0
    assert "Traceback" not in server.log
    assert not os.path.exists(directory), "the metrics directory was left behind"
