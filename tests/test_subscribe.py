"""Live subscriptions over a real server; the market clock is advanced by the tests."""

from __future__ import annotations

import asyncio
import dataclasses
import threading

import grpc
import pytest

from client import MarketDataClient, field_violations
from marketdata.v1 import market_data_pb2
from server.feed import Subscriber
from server.limits import FeedLimits
from server.sim.market import Market
from server.sim.universe import Instrument, MarketConfig
from tests.conftest import ServerThread

SMALL = MarketConfig(
    instruments=(
        Instrument("AAA", 100.0, 0.05, 0.2),
        Instrument("BBB", 20.0, 0.0, 0.4, tick_size=0.05),
        Instrument("CCC", 5.0, 0.0, 0.6, tick_size=0.001),
    ),
    seed=5,
)


def _server(**feed_limits) -> ServerThread:
    srv = ServerThread(market=SMALL)
    if feed_limits:
        srv.running.servicer.feed.limits = FeedLimits(**feed_limits)
    return srv


@pytest.fixture
def live():
    # Tests tick the market many times in one go; a deep buffer keeps every
    # update (the slow-subscriber policies have tests of their own).
    srv = _server(buffer_ticks=1_000)
    yield srv
    srv.stop()


def _prices(event: market_data_pb2.MarketEvent) -> list[tuple[str, float]]:
    body = event.snapshot if event.HasField("snapshot") else event.update
    return [(p.symbol, p.price) for p in body.prices]


def test_snapshot_first_then_one_update_per_tick(live):
    reference = Market(SMALL)
    with MarketDataClient(live.target) as md, md.subscribe(["CCC", "AAA"], timeout=30) as sub:
        events = iter(sub)
        first = next(events)
        assert first.WhichOneof("event") == "snapshot"
        assert first.sequence == 0
        assert _prices(first) == [("CCC", 5.0), ("AAA", 100.0)]
        live.advance_market(20)
        for n in range(1, 21):
            tick = reference.tick()
            event = next(events)
            assert event.WhichOneof("event") == "update"
            assert event.sequence == n
            assert _prices(event) == [("CCC", tick.prices[2]), ("AAA", tick.prices[0])]
        assert sub.gaps == 0


def test_two_subscribers_see_identical_sequences(live):
    with MarketDataClient(live.target) as md, md.subscribe(timeout=30) as a, md.subscribe(timeout=30) as b:
        ea, eb = iter(a), iter(b)
        assert next(ea) == next(eb)  # the same snapshot
        live.advance_market(50)
        seen_a = [next(ea) for _ in range(50)]
        seen_b = [next(eb) for _ in range(50)]
    assert seen_a == seen_b
    assert [e.sequence for e in seen_a] == list(range(1, 51))
    assert [s for s, _ in _prices(seen_a[0])] == ["AAA", "BBB", "CCC"]


def test_heartbeats_fill_silence(live):
    with (
        MarketDataClient(live.target) as md,
        md.subscribe(["BBB"], heartbeat_seconds=0.05, timeout=30) as sub,
    ):
        events = iter(sub)
        assert next(events).HasField("snapshot")
        beat = next(events)  # nothing ticks: a heartbeat follows within 50 ms
        assert beat.WhichOneof("event") == "heartbeat"
        assert beat.sequence == 0
        live.advance_market(1)
        kinds = set()
        while "update" not in kinds:
            kinds.add(next(events).WhichOneof("event"))


def test_unknown_symbols_are_refused_with_their_names(live):
    with MarketDataClient(live.target) as md:
        with pytest.raises(grpc.RpcError) as info:
            next(iter(md.subscribe(["AAA", "XYZ", "QQQ"], timeout=30)))
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "unknown symbols: XYZ, QQQ" in info.value.details()
    assert [f for f, _ in field_violations(info.value)] == ["symbols"]


def test_bad_heartbeat_is_refused(live):
    with MarketDataClient(live.target) as md:
        with pytest.raises(grpc.RpcError) as info:
            next(iter(md.subscribe(heartbeat_seconds=0.001, timeout=30)))
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "heartbeat_seconds must be in [0.05, 3600]" in info.value.details()


def test_subscriber_and_symbol_limits():
    srv = _server(max_subscribers=1, max_symbols=2)
    try:
        with MarketDataClient(srv.target) as md:
            with pytest.raises(grpc.RpcError) as info:
                next(iter(md.subscribe(["AAA", "BBB", "CCC"], timeout=30)))
            assert info.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
            assert "at most 2 symbols" in info.value.details()
            with md.subscribe(["AAA"], timeout=30) as first:
                next(iter(first))
                with pytest.raises(grpc.RpcError) as info:
                    next(iter(md.subscribe(["BBB"], timeout=30)))
                assert info.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
                assert "limit of 1 subscribers" in info.value.details()
    finally:
        srv.stop()


def test_cancel_frees_the_subscription_at_once(live):
    feed = live.running.servicer.feed
    with MarketDataClient(live.target) as md:
        sub = md.subscribe(timeout=30)
        next(iter(sub))
        assert feed.subscriber_count == 1
        sub.cancel()
        assert feed.wait_subscribers(lambda n: n == 0, timeout=10)


def test_a_slow_subscriber_does_not_stall_a_fast_one(live):
    feed = live.running.servicer.feed
    with (
        MarketDataClient(live.target) as md,
        md.subscribe(timeout=30) as slow,
        md.subscribe(timeout=30) as fast,
    ):
        next(iter(slow))  # then never read again during the test
        events = iter(fast)
        next(events)
        live.advance_market(300)
        assert [next(events).sequence for _ in range(300)] == list(range(1, 301))
        assert feed.market.last.sequence == 300


def _run(coro):
    return asyncio.run(coro)


def test_conflation_keeps_the_newest_update_and_counts_what_it_skipped():
    async def scenario():
        sub = Subscriber((0,), ("AAA",), FeedLimits(buffer_ticks=3))
        for n in range(10):
            sub.offer(lambda n=n: [b"update %d" % n])
        got = [await sub.next(0.05) for _ in range(3)]
        return sub, got

    sub, got = _run(scenario())
    # A full buffer of 3 is dropped at the 4th, 7th and 10th offers: only the
    # newest update is left, then silence (None: time for a heartbeat).
    assert got == [b"update 9", None, None]
    assert sub.skipped == 9
    assert not sub.overflowed


def test_disconnect_policy_marks_an_overflowing_subscriber():
    async def scenario():
        sub = Subscriber((0,), ("AAA",), FeedLimits(buffer_ticks=2, slow_policy="disconnect"))
        for n in range(3):
            sub.offer(lambda n=n: [b"u%d" % n])
        return sub

    assert _run(scenario()).overflowed


def test_disconnect_policy_ends_a_slow_stream_with_resource_exhausted():
    srv = _server(buffer_ticks=2, slow_policy="disconnect")
    try:
        feed = srv.running.servicer.feed
        with MarketDataClient(srv.target) as md, md.subscribe(timeout=30) as sub:
            events = iter(sub)
            next(events)
            # Offer the subscriber more updates than its buffer before its
            # handler can send one: ticks run on the server loop in one go.
            srv.advance_market(10)
            with pytest.raises(grpc.RpcError) as info:
                for _ in events:
                    pass
        assert info.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        assert "--slow-subscriber disconnect" in info.value.details()
        assert feed.wait_subscribers(lambda n: n == 0, timeout=10)
    finally:
        srv.stop()


def test_shutdown_ends_subscriptions_with_a_clear_status():
    srv = _server()
    with MarketDataClient(srv.target) as md, md.subscribe(timeout=30) as sub:
        events = iter(sub)
        next(events)
        done = srv.submit(srv.running.shutdown(grace=5))
        with pytest.raises(grpc.RpcError) as info:
            for _ in events:
                pass
        done.result(timeout=10)
    assert info.value.code() == grpc.StatusCode.UNAVAILABLE
    assert "shutting down" in info.value.details()
    srv.stop()


def _status(event) -> list[tuple[str, str]]:
    assert event.WhichOneof("event") == "status", event
    codes = market_data_pb2.SymbolStatus.Code
    return [(s.symbol, codes.Name(s.code)) for s in event.status.symbols]


def test_managed_subscription_changes_symbols_without_reconnecting(live):
    reference = Market(SMALL)
    with MarketDataClient(live.target) as md, md.manage_subscription(timeout=30) as sub:
        events = iter(sub)
        sub.subscribe(["BBB", "NOPE", "BBB"])
        assert _status(next(events)) == [
            ("BBB", "SUBSCRIBED"),
            ("NOPE", "UNKNOWN_SYMBOL"),
            ("BBB", "ALREADY_SUBSCRIBED"),
        ]
        snapshot = next(events)
        assert _prices(snapshot) == [("BBB", 20.0)]
        live.advance_market(1)
        tick = reference.tick()
        assert _prices(next(events)) == [("BBB", tick.prices[1])]

        sub.subscribe(["AAA"])
        assert _status(next(events)) == [("AAA", "SUBSCRIBED")]
        assert _prices(next(events)) == [("AAA", tick.prices[0])]  # snapshot of the newcomer
        live.advance_market(1)
        tick = reference.tick()
        update = next(events)
        assert update.sequence == 2
        assert _prices(update) == [("BBB", tick.prices[1]), ("AAA", tick.prices[0])]

        sub.unsubscribe(["BBB", "CCC"])
        assert _status(next(events)) == [("BBB", "UNSUBSCRIBED"), ("CCC", "NOT_SUBSCRIBED")]
        live.advance_market(1)
        tick = reference.tick()
        assert _prices(next(events)) == [("AAA", tick.prices[0])]
        assert live.running.servicer.feed.subscriber_count == 1
    assert live.running.servicer.feed.wait_subscribers(lambda n: n == 0, timeout=10)


def test_managed_subscription_symbol_limit_is_per_symbol():
    srv = _server(max_symbols=2)
    try:
        with MarketDataClient(srv.target) as md, md.manage_subscription(timeout=30) as sub:
            events = iter(sub)
            sub.subscribe(["AAA", "BBB", "CCC"])
            status = next(events).status.symbols
            assert [market_data_pb2.SymbolStatus.Code.Name(s.code) for s in status] == [
                "SUBSCRIBED",
                "SUBSCRIBED",
                "LIMIT_EXCEEDED",
            ]
            assert "at most 2 symbols" in status[2].message
    finally:
        srv.stop()


def test_managed_subscription_rejects_a_bad_heartbeat(live):
    with MarketDataClient(live.target) as md, md.manage_subscription(timeout=30) as sub:
        sub.subscribe(["AAA"], heartbeat_seconds=-1)
        with pytest.raises(grpc.RpcError) as info:
            for _ in sub:
                pass
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "heartbeat_seconds" in info.value.details()


def test_resubscribe_moves_to_another_server_when_one_shuts_down():
    # Two replicas of one market: the same universe, seed and epoch.
    replica = dataclasses.replace(SMALL, epoch=1_700_000_000.0)
    servers = [ServerThread(market=replica), ServerThread(market=replica)]
    try:
        with MarketDataClient([s.target for s in servers]) as md:
            sub = md.subscribe(["AAA"], resubscribe=True, heartbeat_seconds=60, timeout=60)
            events = iter(sub)
            assert next(events).HasField("snapshot")
            serving = next(s for s in servers if s.running.servicer.feed.subscriber_count == 1)
            other = servers[1 - servers.index(serving)]

            def tick_once_moved() -> None:
                assert other.running.servicer.feed.wait_subscribers(lambda n: n == 1, timeout=30)
                other.advance_market(1)

            serving.call(serving.running.shutdown(grace=1))
            mover = threading.Thread(target=tick_once_moved)
            mover.start()
            # No error reached us. The other server's snapshot was of tick 0, already seen,
            # so it was dropped: the next event is that server's first update.
            event = next(events)
            mover.join(timeout=30)
            assert event.HasField("update") and event.sequence == 1
            assert _prices(event)[0][1] == Market(SMALL).tick().prices[0]
            assert sub.reconnects >= 1
            sub.cancel()
    finally:
        for s in servers:
            s.stop()


def test_without_resubscribe_a_shutdown_reaches_the_caller(live):
    with MarketDataClient(live.target) as md:
        sub = md.subscribe(timeout=30)
        events = iter(sub)
        next(events)
        live.call(live.running.shutdown(grace=1))
        with pytest.raises(grpc.RpcError) as info:
            next(events)
        assert info.value.code() == grpc.StatusCode.UNAVAILABLE


def test_async_client_iterates_events(live):
    from client.aio import AsyncMarketDataClient

    async def scenario():
        async with AsyncMarketDataClient(live.target) as md:
            last = await md.get_last_prices(["CCC"])
            subscription = md.subscribe(["CCC"], timeout=30)
            events = subscription.__aiter__()
            snapshot = await events.__anext__()
            await asyncio.get_running_loop().run_in_executor(None, live.advance_market, 3)
            updates = [await events.__anext__() for _ in range(3)]
            subscription.cancel()
            return last, snapshot, updates, subscription.gaps

    last, snapshot, updates, gaps = asyncio.run(scenario())
    assert last.prices[0].price == 5.0
    assert _prices(snapshot) == [("CCC", 5.0)]
    assert [u.sequence for u in updates] == [1, 2, 3]
    assert gaps == 0
