"""Graceful shutdown: health turns NOT_SERVING, open calls get their grace, exit 0."""

from __future__ import annotations

import re
import signal

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from client import MarketDataClient, gbm_request
from marketdata.v1 import market_data_pb2_grpc
from tests.conftest import server_process

SERVING = health_pb2.HealthCheckResponse.SERVING
NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING


def test_health_turns_not_serving_when_shutdown_begins(fresh_server):
    with grpc.insecure_channel(fresh_server.target) as channel:
        watch = health_pb2_grpc.HealthStub(channel).Watch(health_pb2.HealthCheckRequest(service=""))
        assert next(watch).status == SERVING
        done = fresh_server.submit(fresh_server.running.shutdown(grace=5))
        assert next(watch).status == NOT_SERVING
        watch.cancel()
        done.result(timeout=10)


def test_open_stream_ends_with_unavailable_within_the_grace_period(fresh_server):
    with grpc.insecure_channel(fresh_server.target) as channel:
        stub = market_data_pb2_grpc.MarketDataServiceStub(channel)
        # 10 ticks a second for 1000 ticks: far longer than the grace period.
        stream = stub.StreamGbmPrices(gbm_request(1_000, 70, 0.05, 0.3, ticks_per_second=10, chunk_size=1))
        first = next(stream)
        assert first.offset == 0
        done = fresh_server.submit(fresh_server.running.shutdown(grace=1.0))
        with pytest.raises(grpc.RpcError) as info:
            for _ in stream:
                pass
        assert info.value.code() == grpc.StatusCode.UNAVAILABLE
        assert "shutting down" in info.value.details()
        done.result(timeout=10)
    assert fresh_server.tracker.wait_idle(timeout=5)


def test_sigterm_finishes_open_calls_and_exits_zero(python):
    with server_process(python, "--grace", "5") as (proc, target):
        assert re.fullmatch(r"127\.0\.0\.1:(\d+)", target), target
        with MarketDataClient(target) as md:
            # A paced stream of 3 ticks at 20/s is still open when SIGTERM lands,
            # and completes inside the 5 s grace period.
            stream = md.stream_gbm_prices(
                periods=3, start_price=70, mu=0.05, sigma=0.3, seed=1, ticks_per_second=20, chunk_size=1
            )
            it = iter(stream)
            assert next(it).offset == 0
            proc.send_signal(signal.SIGTERM)
            rest = list(it)
            assert [c.offset for c in rest] == [1, 2]
        assert proc.wait(timeout=15) == 0
        assert "shutting down" in proc.stderr.read()
