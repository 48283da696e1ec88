"""StreamGbmPrices: chunking, pacing, deadlines and cancellation over a real server."""

from __future__ import annotations

import grpc
import numpy as np
import pytest

from client import MarketDataClient, gbm_request
from server.sim.models import Gbm, gbm_path

ORIGINAL = Gbm(70.0, 0.05, 0.3, delta=1.0)


def test_chunks_are_contiguous_and_sized_as_asked(stub):
    chunks = list(stub.StreamGbmPrices(gbm_request(1_000, 70, 0.05, 0.3, seed=3, chunk_size=300, symbol="S")))
    assert [c.offset for c in chunks] == [0, 300, 600, 900]
    assert [len(c.prices) for c in chunks] == [300, 300, 300, 100]
    assert {c.seed for c in chunks} == {3}
    assert {c.symbol for c in chunks} == {"S"}
    assert chunks[0].prices[0] == 70.0


def test_unset_chunk_size_uses_the_server_default(server, stub):
    default = server.running.servicer.limits.default_chunk_size
    chunks = list(stub.StreamGbmPrices(gbm_request(default * 2 + 5, 70, 0.05, 0.3)))
    assert [len(c.prices) for c in chunks] == [default, default, 5]


def test_client_library_yields_numpy_chunks(md):
    with md.stream_gbm_prices(
        periods=2_500, start_price=70, mu=0.05, sigma=0.3, seed=12, chunk_size=1_000
    ) as s:
        chunks = list(s)
    assert all(isinstance(c.prices, np.ndarray) and c.prices.dtype == np.float64 for c in chunks)
    assert np.concatenate([c.prices for c in chunks]).tobytes() == gbm_path(ORIGINAL, 2_500, 12).tobytes()


def test_paced_stream_without_chunk_size_sends_about_10ms_of_ticks_per_message(stub):
    # 1000 ticks/s -> 10 ticks per message; the path is the same as unpaced.
    chunks = list(stub.StreamGbmPrices(gbm_request(30, 70, 0.05, 0.3, seed=5, ticks_per_second=1000)))
    assert [len(c.prices) for c in chunks] == [10, 10, 10]
    prices = np.concatenate([np.array(c.prices) for c in chunks])
    assert prices.tobytes() == gbm_path(ORIGINAL, 30, 5).tobytes()


def test_paced_stream_hits_its_deadline_and_the_server_stops(fresh_server):
    # 1000 prices at 20 per second would take 50 s; the deadline is 0.5 s.
    with MarketDataClient(fresh_server.target) as md:
        stream = md.stream_gbm_prices(
            periods=1_000, start_price=70, mu=0.05, sigma=0.3, ticks_per_second=20, chunk_size=1, timeout=0.5
        )
        received = []
        with pytest.raises(grpc.RpcError) as info:
            for chunk in stream:
                received.append(chunk)
    assert info.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
    assert 0 < len(received) < 1_000
    assert fresh_server.tracker.wait_idle(timeout=10)
    assert fresh_server.tracker.prices_generated < 1_000


def test_cancel_mid_stream_stops_the_servers_work(fresh_server):
    periods = 10**9
    with MarketDataClient(fresh_server.target) as md:
        stream = md.stream_gbm_prices(periods=periods, start_price=70, mu=0.05, sigma=0.3, chunk_size=1_000)
        it = iter(stream)
        for _ in range(3):
            next(it)
        assert fresh_server.tracker.active == 1
        stream.cancel()
        with pytest.raises(grpc.RpcError) as info:
            next(it)
        assert info.value.code() == grpc.StatusCode.CANCELLED
    assert fresh_server.tracker.wait_idle(timeout=10), "the server kept generating after cancel"
    assert fresh_server.tracker.prices_generated < periods // 1000


def test_leaving_the_with_block_cancels_the_stream(fresh_server):
    with MarketDataClient(fresh_server.target) as md:
        with md.stream_gbm_prices(periods=10**9, start_price=70, mu=0.05, sigma=0.3, chunk_size=500) as s:
            next(iter(s))
    assert fresh_server.tracker.wait_idle(timeout=10)
    assert fresh_server.tracker.started == 1
