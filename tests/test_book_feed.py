"""Order books, trades and candles of the live market over a real server; the tests tick
the market themselves (the clock is off)."""

from __future__ import annotations

import asyncio
import json
import math
import queue
import threading
import time
import urllib.error
import urllib.request

import grpc
import numpy as np
import pytest
from google.protobuf import json_format

from client import field_violations
from marketdata.v1 import market_data_pb2 as pb
from marketdata.v1 import market_data_pb2_grpc
from server.book_wire import candle_message, candles_payload
from server.feed import MarketFeed, Subscriber
from server.limits import FeedLimits
from server.sim.book import BookParams
from server.sim.depth import Candle
from server.sim.universe import Instrument, MarketConfig
from tests.conftest import ServerThread

MARKET = MarketConfig(
    instruments=(
        Instrument("AAA", 100.0, 0.05, 0.2, lot_size=100),
        Instrument("BBB", 20.0, 0.0, 0.9, tick_size=0.05),
        Instrument.of_model(
            "RATE", "ornstein_uhlenbeck", {"start": 0.02, "mean": 0.0, "kappa": 1.0, "sigma": 0.5}, 0.001
        ),
    ),
    seed=11,
    book=BookParams(levels=20),
)
SYMBOLS = [i.symbol for i in MARKET.instruments]
TICKS = {i.symbol: i.tick_size for i in MARKET.instruments}


@pytest.fixture
def live():
    srv = ServerThread(market=MARKET, feed_limits=FeedLimits(buffer_ticks=1_000))
    yield srv
    srv.stop()


def _stub(srv: ServerThread) -> tuple[grpc.Channel, market_data_pb2_grpc.MarketDataServiceStub]:
    channel = grpc.insecure_channel(srv.target)
    return channel, market_data_pb2_grpc.MarketDataServiceStub(channel)


class Reader:
    """Reads a stream on a thread into a queue, so a test waits for events with a deadline."""

    def __init__(self, call) -> None:
        self.call, self.events = call, queue.Queue()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        try:
            for event in self.call:
                self.events.put(event)
        except grpc.RpcError as err:
            self.events.put(err)

    def next(self, timeout: float = 10.0) -> pb.MarketEvent:
        event = self.events.get(timeout=timeout)
        if isinstance(event, grpc.RpcError):
            raise event
        return event

    def until(self, kind: str, sequence: int | None = None) -> pb.MarketEvent:
        """The next event of ``kind`` (at ``sequence``, if given), skipping heartbeats and others."""
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            event = self.next(max(0.01, deadline - time.monotonic()))
            if event.WhichOneof("event") == kind and (sequence is None or event.sequence == sequence):
                return event
        raise AssertionError(f"no {kind} event")


class LocalBook:
    """The test's own rebuild of a book from snapshots and updates, independent of the server."""

    def __init__(self) -> None:
        self.sequence: int | None = None
        self.bids: dict[float, int] = {}
        self.asks: dict[float, int] = {}

    def snapshot(self, book: pb.OrderBook) -> None:
        self.sequence = book.sequence
        self.bids = dict(zip(book.bid_prices, book.bid_sizes, strict=True))
        self.asks = dict(zip(book.ask_prices, book.ask_sizes, strict=True))

    def update(self, change: pb.OrderBook) -> None:
        assert change.previous_sequence == self.sequence, "an update that does not follow the book"
        for side, prices, sizes in (
            (self.bids, change.bid_prices, change.bid_sizes),
            (self.asks, change.ask_prices, change.ask_sizes),
        ):
            for price, size in zip(prices, sizes, strict=True):
                if size:
                    side[price] = size
                else:
                    assert price in side, "a removal of a level the book does not have"
                    del side[price]
        self.sequence = change.sequence

    def levels(self) -> tuple[list[tuple[float, int]], list[tuple[float, int]]]:
        return sorted(self.bids.items(), reverse=True), sorted(self.asks.items())


def _levels(book: pb.OrderBook) -> tuple[list[tuple[float, int]], list[tuple[float, int]]]:
    return list(zip(book.bid_prices, book.bid_sizes, strict=True)), list(
        zip(book.ask_prices, book.ask_sizes, strict=True)
    )


def _check_invariants(book: pb.OrderBook, depth: int) -> None:
    tick = TICKS[book.symbol]
    bids, asks = list(book.bid_prices), list(book.ask_prices)
    assert bids == sorted(bids, reverse=True) and len(set(bids)) == len(bids)
    assert asks == sorted(asks) and len(set(asks)) == len(asks)
    assert 1 <= len(asks) <= depth and len(bids) <= depth
    if bids:
        assert bids[0] < asks[0], "crossed or locked"
        assert asks[0] - bids[0] >= tick * (1 - 1e-9), "less than a tick apart"
    assert all(size > 0 for size in (*book.bid_sizes, *book.ask_sizes))
    for price in (*bids, *asks):
        assert math.isclose(price / tick, round(price / tick), abs_tol=1e-6), f"{price} off the {tick} grid"


def test_incremental_updates_rebuild_the_servers_book_at_every_sequence(live):
    channel, stub = _stub(live)
    depth = 7
    with channel:
        request = pb.SubscribeRequest(data=[pb.DataSubscription(type=pb.ORDER_BOOK, depth=depth)])
        reader = Reader(stub.Subscribe(request, timeout=60))
        books = {s: LocalBook() for s in SYMBOLS}
        first = reader.until("book_snapshot")
        assert [b.symbol for b in first.book_snapshot.books] == SYMBOLS
        for book in first.book_snapshot.books:
            _check_invariants(book, depth)
            assert book.depth == depth and book.sequence == 0
            books[book.symbol].snapshot(book)
        updated = set()
        for sequence in range(1, 41):
            live.advance_market(1)
            event = reader.until("book_update", sequence)
            for change in event.book_update.books:
                books[change.symbol].update(change)
                updated.add(change.symbol)
            for symbol in SYMBOLS:
                reply = stub.GetOrderBook(pb.GetOrderBookRequest(symbol=symbol, depth=depth), timeout=10)
                assert reply.sequence == sequence and reply.book.sequence == sequence
                _check_invariants(reply.book, depth)
                assert books[symbol].levels() == _levels(reply.book), (symbol, sequence)
                assert books[symbol].sequence in (sequence, sequence - 1)
        assert updated == set(SYMBOLS)
        reader.call.cancel()


def test_an_unchanged_book_still_moves_its_sequence_so_the_next_update_follows():
    # Without size noise, a book whose price did not move is the same book: its update
    # entry has no levels, and the next one must still apply to the book the client holds.
    still = MarketConfig(
        instruments=(Instrument("CALM", 100.0, 0.0, 0.001), Instrument("MOVER", 100.0, 0.0, 0.9)),
        seed=3,
        book=BookParams(size_noise=0.0, levels=5),
    )
    srv = ServerThread(market=still, feed_limits=FeedLimits(buffer_ticks=1_000))
    try:
        channel, stub = _stub(srv)
        with channel:
            request = pb.SubscribeRequest(data=[pb.DataSubscription(type=pb.ORDER_BOOK, depth=5)])
            reader = Reader(stub.Subscribe(request, timeout=60))
            books = {"CALM": LocalBook(), "MOVER": LocalBook()}
            for book in reader.until("book_snapshot").book_snapshot.books:
                books[book.symbol].snapshot(book)
            empty = 0
            for sequence in range(1, 21):
                srv.advance_market(1)
                update = reader.until("book_update", sequence).book_update.books
                assert [b.symbol for b in update] == ["CALM", "MOVER"]
                for change in update:
                    empty += not (change.bid_prices or change.ask_prices)
                    books[change.symbol].update(change)  # asserts it follows
                    assert books[change.symbol].sequence == sequence
            assert empty > 0, "the calm instrument's book never stood still: the case is not tested"
            for symbol, book in books.items():
                reply = stub.GetOrderBook(pb.GetOrderBookRequest(symbol=symbol, depth=5), timeout=10)
                assert book.levels() == _levels(reply.book)
            reader.call.cancel()
    finally:
        srv.stop()


def test_top_of_book_is_the_books_first_level_at_every_tick(live):
    channel, stub = _stub(live)
    with channel:
        request = pb.SubscribeRequest(data=[pb.DataSubscription(type=pb.TOP_OF_BOOK, symbols=["BBB"])])
        reader = Reader(stub.Subscribe(request, timeout=60))
        assert reader.until("top_of_book").top_of_book.books[0].symbol == "BBB"
        for sequence in range(1, 11):
            live.advance_market(1)
            top = reader.until("top_of_book", sequence).top_of_book.books[0]
            whole = stub.GetOrderBook(pb.GetOrderBookRequest(symbol="BBB", depth=20), timeout=10).book
            assert (top.bid_prices[0], top.bid_sizes[0]) == (whole.bid_prices[0], whole.bid_sizes[0])
            assert (top.ask_prices[0], top.ask_sizes[0]) == (whole.ask_prices[0], whole.ask_sizes[0])
            assert len(top.bid_prices) == len(top.ask_prices) == 1 and top.depth == 1
        reader.call.cancel()


def test_trades_follow_the_price_moves_and_add_up_to_the_candles(live):
    channel, stub = _stub(live)
    with channel:
        request = pb.SubscribeRequest(
            data=[
                pb.DataSubscription(type=pb.LAST_PRICE),
                pb.DataSubscription(type=pb.TRADES),
            ]
        )
        reader = Reader(stub.Subscribe(request, timeout=60))
        last = {p.symbol: p.price for p in reader.until("snapshot").snapshot.prices}
        prints: dict[str, list[pb.Trades]] = {s: [] for s in SYMBOLS}
        moved = 0
        for sequence in range(1, 61):
            live.advance_market(1)
            prices = {p.symbol: p.price for p in reader.until("update", sequence).update.prices}
            batch = (
                {t.symbol: t for t in reader.until("trades", sequence).trades.trades}
                if _trades_due(live)
                else {}
            )
            for symbol in SYMBOLS:
                before, after = last[symbol], prices[symbol]
                trades = batch.get(symbol)
                if after != before:
                    moved += 1
                    assert trades is not None, f"{symbol} moved at {sequence} without a trade"
                    up = after > before
                    assert set(trades.aggressors) == {pb.BUY if up else pb.SELL}
                    assert trades.prices[-1] == after, "the last print is not at the new price"
                    for price in trades.prices:  # (at the old price only where the touch sat on it)
                        assert min(before, after) <= price <= max(before, after)
                    assert list(trades.prices) == sorted(trades.prices, reverse=not up)
                if trades is not None:
                    assert all(size > 0 for size in trades.sizes)
                    assert list(trades.trade_ids) == [sequence * 64 + n for n in range(len(trades.trade_ids))]
                    prints[symbol].append(trades)
            last = prices
        assert moved > 20
        reader.call.cancel()
        for symbol in SYMBOLS:
            candles = stub.GetCandles(
                pb.GetCandlesRequest(symbol=symbol, interval=pb.CANDLE_INTERVAL_1S), timeout=10
            ).candles
            every = [
                (t.times[n], t.prices[n], t.sizes[n]) for t in prints[symbol] for n in range(len(t.prices))
            ]
            for candle in candles:
                start = candle.start_time.ToNanoseconds()
                inside = [(p, s) for when, p, s in every if start <= when < start + 1_000_000_000]
                assert candle.volume == sum(s for _, s in inside) and candle.trade_count == len(inside)
                assert (candle.open, candle.close) == (inside[0][0], inside[-1][0])
                assert (candle.high, candle.low) == (max(p for p, _ in inside), min(p for p, _ in inside))
            assert sum(c.volume for c in candles) == sum(s for _, _, s in every)
            recent = stub.GetTrades(pb.GetTradesRequest(symbol=symbol, limit=5), timeout=10).trades
            assert (
                list(recent.trade_ids)
                == [t.trade_ids[n] for t in prints[symbol] for n in range(len(t.trade_ids))][-5:]
            )


def test_candle_subscriptions_send_the_forming_candle_at_each_tick_that_trades(live):
    channel, stub = _stub(live)
    with channel:
        request = pb.SubscribeRequest(
            data=[
                pb.DataSubscription(type=pb.TRADES, symbols=["BBB"]),
                pb.DataSubscription(type=pb.CANDLES_1S, symbols=["BBB"]),
                pb.DataSubscription(type=pb.CANDLES_1M, symbols=["BBB"]),
            ]
        )
        reader = Reader(stub.Subscribe(request, timeout=60))
        assert reader.next().HasField("heartbeat"), "no sign that the subscription is live"
        seen = 0
        for n in range(1, 31):
            live.call(_advance_at(live, 1_800_000_000.0 + n / 4))  # four ticks a second
            trades = live.running.servicer.feed.depth.trades[1]
            if trades is None or not len(trades):
                continue
            assert reader.until("trades", n).trades.trades[0].symbol == "BBB"
            candles = [c for _ in range(2) for c in reader.until("candles", n).candles.candles]
            assert [(c.symbol, c.interval) for c in candles] == [
                ("BBB", pb.CANDLE_INTERVAL_1S),
                ("BBB", pb.CANDLE_INTERVAL_1M),
            ]
            for candle in candles:
                interval = (
                    pb.CANDLE_INTERVAL_1S
                    if candle.interval == pb.CANDLE_INTERVAL_1S
                    else pb.CANDLE_INTERVAL_1M
                )
                kept = stub.GetCandles(
                    pb.GetCandlesRequest(symbol="BBB", interval=interval), timeout=10
                ).candles
                assert candle == kept[-1], "the event is not the forming candle"
                assert candle.close == trades.prices[-1]
            seen += 1
        assert seen > 10
        reader.call.cancel()


def _trades_due(srv: ServerThread) -> bool:
    """Whether the tick just published has any print (then a trades event comes)."""
    return any(t is not None and len(t) for t in srv.running.servicer.feed.depth.trades)


def test_replicas_and_a_late_catch_up_publish_the_same_books_and_trades():
    # Two feeds of one seed: one ticks through every sequence, the other jumps to 30 at once.
    stepped = MarketFeed(MARKET, epoch=0.0, wall_clock=lambda: 0.0)
    jumped = MarketFeed(MARKET, epoch=0.0, wall_clock=lambda: 0.0)
    for _ in range(30):
        stepped.advance(exchange_time=1.0)
    jumped.catch_up(30 * MARKET.wall_interval + 1e-6)
    assert jumped.last.sequence == stepped.last.sequence == 30
    assert all(t is None for t in jumped.depth.trades), "trades of a tick after a jump are unknown"
    for a, b in ((stepped.depth.book(n), jumped.depth.book(n)) for n in range(len(SYMBOLS))):
        for field in ("bid_prices", "bid_sizes", "ask_prices", "ask_sizes"):
            np.testing.assert_array_equal(getattr(a, field), getattr(b, field))
    for feed in (stepped, jumped):
        feed.advance(exchange_time=2.0)
    for a, b in zip(stepped.depth.trades, jumped.depth.trades, strict=True):
        for field in ("ids", "prices", "sizes", "sides"):
            np.testing.assert_array_equal(getattr(a, field), getattr(b, field))


def test_a_conflated_book_subscriber_gets_a_fresh_snapshot_never_a_wrong_book():
    srv = ServerThread(market=MARKET, feed_limits=FeedLimits(buffer_ticks=2))
    try:
        channel, stub = _stub(srv)
        with channel:
            request = pb.SubscribeRequest(
                data=[pb.DataSubscription(type=pb.ORDER_BOOK, symbols=["AAA"], depth=5)]
            )
            call = stub.Subscribe(request, timeout=60)
            events = iter(call)
            book = LocalBook()
            book.snapshot(next(events).book_snapshot.books[0])
            srv.advance_market(12)  # nobody reads: the server conflates
            snapshots = 0
            while book.sequence != 12:
                event = next(events)
                kind = event.WhichOneof("event")
                if kind == "book_snapshot":
                    snapshots += 1
                    book.snapshot(event.book_snapshot.books[0])
                elif kind == "book_update":
                    book.update(event.book_update.books[0])  # asserts it follows
            assert snapshots >= 1
            reply = stub.GetOrderBook(pb.GetOrderBookRequest(symbol="AAA", depth=5), timeout=10)
            assert reply.sequence == 12 and book.levels() == _levels(reply.book)
            call.cancel()
    finally:
        srv.stop()


def test_manage_subscription_by_type_and_depth(live):
    channel, stub = _stub(live)
    with channel:
        requests: queue.Queue = queue.Queue()
        call = stub.ManageSubscription(iter(requests.get, None), timeout=60)
        reader = Reader(call)
        requests.put(
            pb.SubscriptionRequest(
                subscribe=pb.SymbolList(symbols=["AAA", "NOPE"], type=pb.ORDER_BOOK, depth=3)
            )
        )
        status = reader.until("status").status.symbols
        assert [(s.symbol, s.code, s.type) for s in status] == [
            ("AAA", pb.SymbolStatus.SUBSCRIBED, pb.ORDER_BOOK),
            ("NOPE", pb.SymbolStatus.UNKNOWN_SYMBOL, pb.ORDER_BOOK),
        ]
        snapshot = reader.until("book_snapshot").book_snapshot.books
        assert [(b.symbol, b.depth, len(b.bid_prices)) for b in snapshot] == [("AAA", 3, 3)]
        requests.put(
            pb.SubscriptionRequest(subscribe=pb.SymbolList(symbols=["AAA"], type=pb.ORDER_BOOK, depth=3))
        )
        assert reader.until("status").status.symbols[0].code == pb.SymbolStatus.ALREADY_SUBSCRIBED
        requests.put(
            pb.SubscriptionRequest(subscribe=pb.SymbolList(symbols=["AAA"], type=pb.ORDER_BOOK, depth=6))
        )
        assert reader.until("status").status.symbols[0].code == pb.SymbolStatus.SUBSCRIBED
        assert reader.until("book_snapshot").book_snapshot.books[0].depth == 6
        requests.put(pb.SubscriptionRequest(subscribe=pb.SymbolList(symbols=["BBB"], type=pb.TRADES)))
        status = reader.until("status").status.symbols
        assert [(s.symbol, s.code, s.type) for s in status] == [
            ("BBB", pb.SymbolStatus.SUBSCRIBED, pb.TRADES)
        ]
        live.advance_market(1)
        update = reader.until("book_update", 1).book_update.books
        assert [b.depth for b in update] == [6]
        requests.put(
            pb.SubscriptionRequest(unsubscribe=pb.SymbolList(symbols=["AAA", "BBB"], type=pb.ORDER_BOOK))
        )
        status = reader.until("status").status.symbols
        assert [(s.symbol, s.code) for s in status] == [
            ("AAA", pb.SymbolStatus.UNSUBSCRIBED),
            ("BBB", pb.SymbolStatus.NOT_SUBSCRIBED),
        ]
        feed = live.running.servicer.feed
        assert feed.book_subscriptions == 0
        assert not feed._watched, "the clock still computes books nobody follows"
        requests.put(None)
        call.cancel()


@pytest.mark.parametrize(
    ("request_", "field", "words"),
    [
        (
            pb.SubscribeRequest(data=[pb.DataSubscription(type=pb.ORDER_BOOK, depth=21)]),
            "data[0].depth",
            "[0, 20]",
        ),
        (pb.SubscribeRequest(data=[pb.DataSubscription(type=99)]), "data[0].type", "LAST_PRICE"),
        (
            pb.SubscribeRequest(
                data=[pb.DataSubscription(type=pb.TRADES), pb.DataSubscription(type=pb.TRADES)]
            ),
            "data[1].type",
            "TRADES is repeated",
        ),
        (
            pb.SubscribeRequest(symbols=["AAA"], data=[pb.DataSubscription(type=pb.TRADES)]),
            "symbols",
            "not both",
        ),
        (pb.SubscribeRequest(data=[pb.DataSubscription(type=pb.TRADES, symbols=["ZZZ"])]), "symbols", "ZZZ"),
    ],
)
def test_bad_data_subscriptions_name_the_field(live, request_, field, words):
    channel, stub = _stub(live)
    with channel, pytest.raises(grpc.RpcError) as caught:
        next(iter(stub.Subscribe(request_, timeout=10)))
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert words in caught.value.details()
    assert [f for f, _ in field_violations(caught.value)] == [field]
    assert live.running.servicer.feed.book_subscriptions == 0


def test_book_limits_refuse_with_their_flags_and_free_on_leaving():
    limits = FeedLimits(max_book_depth=5, max_book_subscriptions=4, buffer_ticks=100)
    srv = ServerThread(market=MARKET, feed_limits=limits)
    try:
        channel, stub = _stub(srv)
        with channel:
            deep = pb.SubscribeRequest(data=[pb.DataSubscription(type=pb.ORDER_BOOK, depth=6)])
            with pytest.raises(grpc.RpcError) as caught:
                next(iter(stub.Subscribe(deep, timeout=10)))
            assert caught.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
            assert "--max-book-depth" in caught.value.details()
            with pytest.raises(grpc.RpcError) as caught:
                stub.GetOrderBook(pb.GetOrderBookRequest(symbol="AAA", depth=6), timeout=10)
            assert caught.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
            three = pb.SubscribeRequest(data=[pb.DataSubscription(type=pb.ORDER_BOOK, depth=5)])
            held = stub.Subscribe(three, timeout=60)
            assert next(iter(held)).HasField("book_snapshot")
            two = pb.SubscribeRequest(data=[pb.DataSubscription(type=pb.TOP_OF_BOOK, symbols=["AAA", "BBB"])])
            with pytest.raises(grpc.RpcError) as caught:
                next(iter(stub.Subscribe(two, timeout=10)))
            assert caught.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
            assert "--max-book-subscriptions" in caught.value.details()
            requests: queue.Queue = queue.Queue()
            managed = Reader(stub.ManageSubscription(iter(requests.get, None), timeout=60))
            requests.put(
                pb.SubscriptionRequest(subscribe=pb.SymbolList(symbols=["AAA", "BBB"], type=pb.TOP_OF_BOOK))
            )
            codes = [(s.symbol, s.code) for s in managed.until("status").status.symbols]
            assert codes == [("AAA", pb.SymbolStatus.SUBSCRIBED), ("BBB", pb.SymbolStatus.LIMIT_EXCEEDED)]
            held.cancel()
            feed = srv.running.servicer.feed
            assert feed.wait_subscribers(lambda n: n == 1, timeout=10)
            assert feed.book_subscriptions == 1
            assert feed._watched == {0}, "only the managed subscriber's AAA book is still followed"
            next(iter(stub.Subscribe(two, timeout=10)))  # room again
            requests.put(None)
            managed.call.cancel()
    finally:
        srv.stop()


def test_trade_and_candle_histories_are_bounded():
    srv = ServerThread(market=MARKET, feed_limits=FeedLimits(trade_history=7, candle_history=3))
    try:
        channel, stub = _stub(srv)
        with channel:
            for n in range(40):
                srv.call(_advance_at(srv, 1_800_000_000.0 + n))  # one 1s candle per tick
            trades = stub.GetTrades(pb.GetTradesRequest(symbol="BBB"), timeout=10).trades
            assert len(trades.trade_ids) == 7
            assert list(trades.trade_ids) == sorted(trades.trade_ids) and trades.trade_ids[-1] // 64 <= 40
            candles = stub.GetCandles(
                pb.GetCandlesRequest(symbol="BBB", interval=pb.CANDLE_INTERVAL_1S), timeout=10
            ).candles
            assert len(candles) == 3
            assert [c.start_time.seconds for c in candles] == sorted(c.start_time.seconds for c in candles)
            for bad, field in (
                (pb.GetTradesRequest(symbol="BBB", limit=8), "limit"),
                (pb.GetTradesRequest(symbol="NOPE"), "symbol"),
            ):
                with pytest.raises(grpc.RpcError) as caught:
                    stub.GetTrades(bad, timeout=10)
                assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
                assert [f for f, _ in field_violations(caught.value)] == [field]
            with pytest.raises(grpc.RpcError) as caught:
                stub.GetCandles(pb.GetCandlesRequest(symbol="BBB"), timeout=10)
            assert [f for f, _ in field_violations(caught.value)] == ["interval"]
    finally:
        srv.stop()


async def _advance_at(srv: ServerThread, exchange_time: float) -> None:
    srv.running.servicer.feed.advance(exchange_time=exchange_time)


def test_list_instruments_reports_lot_sizes(live):
    channel, stub = _stub(live)
    with channel:
        infos = stub.ListInstruments(pb.ListInstrumentsRequest(), timeout=10).instruments
    assert [i.lot_size for i in infos] == [100, 1, 1]


def test_books_and_trades_over_http_are_the_grpc_replies():
    srv = ServerThread(market=MARKET, http_port=0)
    try:
        srv.advance_market(5)
        channel, stub = _stub(srv)
        with channel:
            book = stub.GetOrderBook(pb.GetOrderBookRequest(symbol="BBB", depth=4), timeout=10)
            trades = stub.GetTrades(pb.GetTradesRequest(symbol="BBB"), timeout=10)
        base = f"http://127.0.0.1:{srv.running.http_port}/marketdata.v1.MarketDataService"
        for method, body, expected in (
            ("GetOrderBook", {"symbol": "BBB", "depth": 4}, book),
            ("GetTrades", {"symbol": "BBB"}, trades),
        ):
            request = urllib.request.Request(
                f"{base}/{method}",
                data=json.dumps(body).encode(),
                headers={"Content-Type": "application/json"},
            )
            with urllib.request.urlopen(request, timeout=10) as reply:
                got = json_format.Parse(reply.read(), type(expected)())
            assert got == expected
        request = urllib.request.Request(
            f"{base}/GetOrderBook",
            data=json.dumps({"symbol": "BBB", "depth": 21}).encode(),
            headers={"Content-Type": "application/json"},
        )
        with pytest.raises(urllib.error.HTTPError) as caught:
            urllib.request.urlopen(request, timeout=10)
        assert caught.value.code == 400
        assert "depth must be in [0, 20]" in json.loads(caught.value.read())["message"]
    finally:
        srv.stop()


def test_snapshots_a_reader_leaves_unread_are_held_no_more_than_its_buffer():
    # Each change of depth queues whole books, as a tick's events are queued: a reader that
    # reads nothing holds at most --subscriber-buffer of them (older ones are conflated away,
    # and whole books follow). Over gRPC a reader that sends more requests than that unread
    # is cut off by the same limit on its statuses; this is the feed's own bound beneath it.
    feed = MarketFeed(MARKET, limits=FeedLimits(buffer_ticks=2))

    async def changes() -> Subscriber:
        subscriber = feed.open_managed()
        for depth in range(1, 9):
            outcome, _ = feed.change(subscriber, SYMBOLS, (), pb.ORDER_BOOK, depth)
            assert [code for _, code, _ in outcome] == [pb.SymbolStatus.SUBSCRIBED] * len(SYMBOLS)
            assert len(subscriber._queue) <= 2
        return subscriber

    subscriber = asyncio.run(changes())
    assert subscriber.resnapshot and subscriber.skipped >= 6
    assert [book for tick in subscriber._queue for book in tick]  # the newest books wait, whole


def test_book_trade_and_candle_events_are_the_bytes_protobuf_writes():
    # The feed writes its events by hand (struct and numpy); a protobuf peer must read them,
    # and re-serializing what it read must give the very same bytes.
    feed = MarketFeed(MARKET, epoch=0.0, wall_clock=lambda: 0.0)
    key = (
        (pb.TOP_OF_BOOK, (0, 1, 2), (0, 0, 0)),
        (pb.ORDER_BOOK, (2, 0, 1), (3, 20, 7)),
        (pb.TRADES, (0, 1, 2), (0, 0, 0)),
        (pb.CANDLES_1S, (0, 1, 2), (0, 0, 0)),
        (pb.CANDLES_1M, (1,), (0,)),
    )
    kinds = set()
    for n in range(1, 30):
        feed.advance(exchange_time=1_800_000_000.0 + n / 3)
        for snapshot in (False, True):
            for data in feed.depth_encoding.events(key, snapshot):
                event = pb.MarketEvent.FromString(data)
                kinds.add(event.WhichOneof("event"))
                assert event.SerializeToString() == data
    assert kinds == {"top_of_book", "book_update", "book_snapshot", "trades", "candles"}


def test_get_candles_replies_are_the_bytes_protobuf_writes():
    # GetCandles writes every candle at once with numpy; each field of each candle must come
    # out as the generated class writes it, zeros left out (-0.0 kept), any width of varint.
    rng = np.random.default_rng(8)
    starts = [0, -1, -(10**9), 999_999_999, 10**9, 1_800_000_000 * 10**9 + 5, 2**62, -(2**62)]
    prices = [0.0, -0.0, 1.5, 1e300, math.nan, -math.inf, 123.45]
    lots = [0, 1, 127, 128, 2**40, 2**63 - 1]
    for symbol in ("ACME", "X" * 200):  # a candle of 200 more bytes: a 2-byte length
        for count in (0, 1, 9, 300):
            candles = [
                Candle(
                    int(rng.choice(starts)),
                    *(float(rng.choice(prices)) for _ in range(4)),
                    int(rng.choice(lots)),
                    int(rng.choice(lots)),
                )
                for _ in range(count)
            ]
            for interval in ("1s", "1m"):
                expected = pb.GetCandlesResponse(
                    candles=[candle_message(symbol, interval, c) for c in candles]
                )
                field = pb.GetCandlesResponse.DESCRIPTOR.fields_by_name["candles"].number
                assert candles_payload(field, symbol, interval, candles) == expected.SerializeToString()
