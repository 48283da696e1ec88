"""Subscriptions by data type through the sync and async clients and the command line.

The server is a real gRPC server on loopback playing back scripted events
(tests/scripted_server.py): books from the server's book model, trades, a
broken book; it records what each client asked for.
"""

from __future__ import annotations

import asyncio
import json
import signal
import subprocess

import grpc
import pytest

from client import (
    AsyncMarketDataClient,
    Book,
    BookColumns,
    BookKeeper,
    DecodedEvent,
    MarketDataClient,
    Subscription,
    TradeColumns,
    data_subscription,
    decode_market_event,
    subscribe_request,
)
from marketdata.v1 import market_data_pb2 as pb
from tests.conftest import REPO_ROOT
from tests.scripted_server import ScriptedServer
from tests.test_cli import read_terminal, run_client
from tests.test_client_book import Market, assert_book

NS = 1_700_000_000_000_000_000


def book_script(depth: int = 3, ticks: int = 4) -> tuple[Market, list[bytes]]:
    """A snapshot and ``ticks`` updates of the scripted market; the market is at the last tick."""
    market = Market(depth)
    events = [market.snapshot()]
    events += [market.step() for _ in range(ticks)]
    for event in events:
        event.exchange_time.FromNanoseconds(NS + event.sequence * 10**8)
    return market, [e.SerializeToString() for e in events]


def trades_event(sequence: int = 5) -> pb.MarketEvent:
    event = pb.MarketEvent(sequence=sequence)
    event.exchange_time.FromNanoseconds(NS)
    event.trades.trades.add(
        symbol="ACME",
        trade_ids=[sequence * 64, sequence * 64 + 1],
        prices=[70.01, 70.02],
        sizes=[5, 3],
        aggressors=[pb.BUY, pb.SELL],
        times=[NS, NS],
    )
    return event


def test_subscribe_asks_for_the_data_types_and_yields_numpy_columns():
    market, events = book_script()
    with ScriptedServer([*events, trades_event().SerializeToString()]) as server:
        with MarketDataClient(server.target) as md:
            data = [data_subscription("ORDER_BOOK", ["ACME"], depth=3), data_subscription("trades", ["ACME"])]
            with md.subscribe(data=data, heartbeat_seconds=0.5, numpy=True) as subscription:
                received = list(subscription)
            with md.subscribe(data=data) as subscription:
                messages = list(subscription)
    request = server.requests[0][1]
    assert [(d.type, list(d.symbols), d.depth) for d in request.data] == [
        (pb.ORDER_BOOK, ["ACME"], 3),
        (pb.TRADES, ["ACME"], 0),
    ]
    assert request.heartbeat_seconds == 0.5 and not request.symbols
    assert all(isinstance(e, DecodedEvent) for e in received)
    assert [e.kind for e in received] == ["book_snapshot", *["book_update"] * 4, "trades"]
    assert isinstance(received[0].books, BookColumns) and isinstance(received[-1].trades, TradeColumns)
    assert received[-1].trades[0].aggressors.tolist() == [pb.BUY, pb.SELL]
    assert [m.WhichOneof("event") for m in messages] == [e.kind for e in received]
    keeper = BookKeeper()
    for event in received:
        keeper.apply(event)
    for symbol in market.symbols:
        assert_book(keeper[symbol], market.books[symbol])


def test_the_async_client_yields_the_same_events():
    market, events = book_script()

    async def follow(target: str) -> list:
        async with AsyncMarketDataClient(target) as md:
            data = [data_subscription("order_book", depth=3)]
            return [event async for event in md.subscribe(data=data, numpy=True)]

    with ScriptedServer(events) as server:
        received = asyncio.run(follow(server.target))
    assert server.requests[0][1].data[0].type == pb.ORDER_BOOK
    keeper = BookKeeper()
    for event in received:
        keeper.apply(event)
    assert [symbol for symbol in keeper] == market.symbols
    for symbol in market.symbols:
        assert_book(keeper[symbol], market.books[symbol])


def test_last_price_gaps_are_counted_from_decoded_events_as_from_messages():
    def price_event(kind: str, sequence: int) -> bytes:
        event = pb.MarketEvent(sequence=sequence)
        getattr(event, kind).prices.add(symbol="ACME", price=70.0 + sequence)
        return event.SerializeToString()

    book = pb.MarketEvent(sequence=8, book_update=pb.OrderBooks(books=[pb.OrderBook(symbol="ACME")]))
    script = [
        price_event("snapshot", 5),
        price_event("update", 6),
        book.SerializeToString(),  # other kinds at other sequences change nothing
        price_event("update", 9),
        price_event("update", 12),
    ]
    with ScriptedServer(script) as server, MarketDataClient(server.target) as md:
        for numpy in (False, True):
            with md.subscribe(["ACME"], numpy=numpy) as subscription:
                events = list(subscription)
            assert subscription.gaps == 4 and subscription.last_sequence == 12
            assert events[-1].sequence == 12


class _Unavailable(grpc.RpcError):
    def code(self) -> grpc.StatusCode:
        return grpc.StatusCode.UNAVAILABLE


class _Call:
    """A stand-in for a subscription's call: its events, then (optionally) a lost server."""

    def __init__(self, events: list, lost: bool) -> None:
        self.events, self.lost = events, lost

    def __iter__(self):
        yield from self.events
        if self.lost:
            raise _Unavailable()

    def cancel(self) -> None:
        pass


def test_a_resubscription_starts_books_over_and_never_repeats_prices_or_trades():
    market = Market(3)
    snapshot, first, second = market.snapshot(), market.step(), market.step()
    snapshot.sequence = 10
    first.sequence, second.sequence = 11, 12

    def price(kind: str, sequence: int) -> pb.MarketEvent:
        event = pb.MarketEvent(sequence=sequence)
        getattr(event, kind).prices.add(symbol="ACME", price=float(sequence))
        return event

    before = [price("snapshot", 10), snapshot, trades_event(10), price("update", 11), first, trades_event(11)]
    # The replica taken next is a tick behind: it starts at the same snapshot.
    after = [price("snapshot", 10), snapshot, trades_event(10), price("update", 11), first]
    after += [trades_event(11), price("update", 12), second, trades_event(12)]
    calls = iter(
        [_Call([decode(e) for e in before], lost=True), _Call([decode(e) for e in after], lost=False)]
    )
    subscription = Subscription(lambda: next(calls), resubscribe=True, backoff_seconds=0)
    events = list(subscription)
    kinds = [(e.kind, e.sequence) for e in events[len(before) :]]
    assert kinds == [
        ("book_snapshot", 10),
        ("book_update", 11),
        ("update", 12),
        ("book_update", 12),
        ("trades", 12),
    ]
    assert subscription.reconnects == 1 and subscription.gaps == 0
    keeper = BookKeeper()
    for event in events:
        keeper.apply(event)
    assert keeper.gaps == 0
    for symbol in market.symbols:
        assert keeper[symbol].bid_sizes.tolist() == market.books[symbol].bid_sizes.tolist()


def decode(event: pb.MarketEvent) -> DecodedEvent:
    return decode_market_event(event.SerializeToString())


def test_a_managed_subscription_changes_data_types_and_depths():
    status = pb.MarketEvent(
        status=pb.SubscriptionStatus(
            symbols=[pb.SymbolStatus(symbol="ACME", code=pb.SymbolStatus.SUBSCRIBED, type=pb.ORDER_BOOK)]
        )
    )
    market, events = book_script(ticks=1)
    with ScriptedServer([status.SerializeToString(), *events]) as server:
        with MarketDataClient(server.target) as md, md.manage_subscription(numpy=True) as managed:
            managed.subscribe(["ACME"], data_type="order_book", depth=5, heartbeat_seconds=2)
            managed.subscribe(["ACME"], data_type=pb.TRADES)
            managed.unsubscribe(["ACME"], data_type="ORDER_BOOK")
            received = [event for _, event in zip(range(3), managed, strict=False)]
    assert received[0].kind == "status" and received[0].message == status
    assert [e.kind for e in received[1:]] == ["book_snapshot", "book_update"]
    asked = [request for _, request in server.requests]
    assert asked[0].subscribe.type == pb.ORDER_BOOK and asked[0].subscribe.depth == 5
    assert asked[0].heartbeat_seconds == 2 and list(asked[0].subscribe.symbols) == ["ACME"]
    assert asked[1].subscribe.type == pb.TRADES
    assert asked[2].WhichOneof("action") == "unsubscribe" and asked[2].unsubscribe.type == pb.ORDER_BOOK


def test_unary_book_trade_and_candle_calls_sync_and_async():
    book = pb.OrderBook(
        symbol="ACME", sequence=4, bid_prices=[70.0], bid_sizes=[3], ask_prices=[70.01], ask_sizes=[2]
    )
    replies = {
        "GetOrderBook": pb.GetOrderBookResponse(sequence=4, book=book),
        "GetTrades": pb.GetTradesResponse(sequence=4, trades=trades_event().trades.trades[0]),
        "GetCandles": pb.GetCandlesResponse(
            sequence=4, candles=[pb.Candle(symbol="ACME", open=70, volume=8)]
        ),
    }
    with ScriptedServer(replies=replies) as server:
        with MarketDataClient(server.target) as md:
            assert Book.of(md.get_order_book("ACME", depth=1).book).best_ask == 70.01
            assert list(md.get_trades("ACME", limit=2).trades.sizes) == [5, 3]
            assert md.get_candles("ACME", "1m", limit=9).candles[0].volume == 8

        async def ask(target: str) -> list:
            async with AsyncMarketDataClient(target) as md:
                return [
                    await md.get_order_book("ACME", 7),
                    await md.get_trades("ACME"),
                    await md.get_candles("ACME"),
                ]

        assert asyncio.run(ask(server.target)) == list(replies.values())
    sent = [(name, request) for name, request in server.requests]
    assert sent[0] == ("GetOrderBook", pb.GetOrderBookRequest(symbol="ACME", depth=1))
    assert sent[1] == ("GetTrades", pb.GetTradesRequest(symbol="ACME", limit=2))
    assert sent[2] == (
        "GetCandles",
        pb.GetCandlesRequest(symbol="ACME", interval=pb.CANDLE_INTERVAL_1M, limit=9),
    )
    assert sent[3][1].depth == 7 and sent[5][1].interval == pb.CANDLE_INTERVAL_1S


def test_requests_refuse_what_the_server_would_not_understand():
    with pytest.raises(ValueError, match="order_book"):
        data_subscription("book")
    with pytest.raises(ValueError, match="not both"):
        subscribe_request(["ACME"], data=[data_subscription("trades")])
    with pytest.raises(ValueError, match="1s, 1m"):
        MarketDataClient("127.0.0.1:1").get_candles("ACME", "5m")


# --- the command line ------------------------------------------------------------------------


def test_book_subscription_prints_json_lines_when_piped(python):
    market, events = book_script(depth=3)
    with ScriptedServer(events) as server:
        done = run_client(python, "--target", server.target, "subscribe", "--book", "3", "ACME", "GLOBEX")
    assert done.returncode == 0, done.stderr
    request = server.requests[0][1]
    assert [(d.type, list(d.symbols), d.depth) for d in request.data] == [
        (pb.ORDER_BOOK, ["ACME", "GLOBEX"], 3)
    ]
    lines = [json.loads(line) for line in done.stdout.splitlines()]
    assert [line["kind"] for line in lines] == ["book_snapshot", *["book_update"] * 4]
    last = lines[-1]
    assert last["sequence"] == 4 and last["exchange_time"].startswith("2023-11-14T22:13:20.4")
    for symbol in market.symbols:
        expected = market.books[symbol]
        assert last["books"][symbol]["bids"] == [
            list(x) for x in zip(expected.bid_prices.tolist(), expected.bid_sizes.tolist(), strict=True)
        ]
        assert last["books"][symbol]["asks"] == [
            list(x) for x in zip(expected.ask_prices.tolist(), expected.ask_sizes.tolist(), strict=True)
        ]
        assert "stale" not in last["books"][symbol]


def test_trades_print_a_json_line_each_when_piped(python):
    with ScriptedServer([trades_event().SerializeToString()]) as server:
        done = run_client(python, "--target", server.target, "subscribe", "--trades", "ACME", "--count", "1")
    assert done.returncode == 0, done.stderr
    assert server.requests[0][1].data[0].type == pb.TRADES
    lines = [json.loads(line) for line in done.stdout.splitlines()]
    assert lines == [
        {
            "kind": "trade",
            "symbol": "ACME",
            "trade_id": 320,
            "price": 70.01,
            "size": 5,
            "side": "BUY",
            "time": "2023-11-14T22:13:20.000Z",
        },
        {
            "kind": "trade",
            "symbol": "ACME",
            "trade_id": 321,
            "price": 70.02,
            "size": 3,
            "side": "SELL",
            "time": "2023-11-14T22:13:20.000Z",
        },
    ]


def test_a_ladder_is_drawn_in_place_on_a_terminal_with_the_latest_trades(python):
    market, events = book_script(depth=3, ticks=2)
    with ScriptedServer([*events, trades_event().SerializeToString()]) as server:
        code, seen, err = read_terminal(
            python, "--target", server.target, "subscribe", "--book", "3", "--trades"
        )
    assert code == 0, err
    assert seen.count(b"\x1b[2J") == 4  # redrawn at each book event and at the trades
    last = seen.rsplit(b"\x1b[2J", 1)[1].decode()
    acme = market.books["ACME"]
    assert f"ask {acme.ask_prices[0]:>12.2f} {acme.ask_sizes[0]:>8}" in last
    assert f"bid {acme.bid_prices[0]:>12.2f} {acme.bid_sizes[0]:>8}" in last
    rows = [line for line in last.splitlines() if line.startswith(("ask", "bid"))]
    assert rows[0].startswith("ask") and rows[-1].startswith("bid")  # asks above, bids below
    assert "recent trades" in last and "SELL" in last
    assert '"kind"' not in seen.decode()


def test_trades_alone_are_a_line_each_on_a_terminal(python):
    with ScriptedServer([trades_event(5).SerializeToString(), trades_event(6).SerializeToString()]) as server:
        code, seen, err = read_terminal(python, "--target", server.target, "subscribe", "--trades")
    assert code == 0, err
    lines = [line for line in seen.decode().splitlines() if line.strip()]
    assert len(lines) == 4 and "BUY" in lines[0] and "#385" in lines[-1]
    assert b"\x1b[2J" not in seen


def test_a_broken_book_is_a_warning_and_the_ladder_goes_on(python):
    crossed = pb.MarketEvent(
        book_snapshot=pb.OrderBooks(
            books=[
                pb.OrderBook(
                    symbol="ACME", bid_prices=[71.0], bid_sizes=[1], ask_prices=[70.0], ask_sizes=[1]
                )
            ]
        )
    )
    market, events = book_script(depth=3, ticks=1)
    with ScriptedServer([crossed.SerializeToString(), *events]) as server:
        done = run_client(python, "--target", server.target, "subscribe", "--book", "3")
    assert done.returncode == 0, done.stderr
    assert "warning: invalid book: ACME: crossed" in done.stderr and "Traceback" not in done.stderr
    lines = [json.loads(line) for line in done.stdout.splitlines()]
    assert lines[0]["books"]["ACME"]["stale"].startswith("invalid: crossed")
    assert "stale" not in lines[-1]["books"]["ACME"]  # the next snapshot healed it


def test_errors_exit_with_a_readable_message(python):
    refused = (grpc.StatusCode.INVALID_ARGUMENT, "data[0].depth: depth must be 1 to 50, got 99")
    with ScriptedServer(error=refused) as server:
        done = run_client(python, "--target", server.target, "subscribe", "--book", "99")
    assert done.returncode == 1
    assert "depth must be 1 to 50" in done.stderr and "Traceback" not in done.stderr
    bad = run_client(python, "subscribe", "--book", "0")
    assert bad.returncode == 2 and "--book" in bad.stderr


def test_ctrl_c_ends_a_book_subscription_cleanly(python):
    _, events = book_script(depth=2, ticks=1)
    with ScriptedServer(events, hold=True) as server:
        proc = subprocess.Popen(
            [python, "-m", "client", "--target", server.target, "subscribe", "--book", "2"],
            cwd=REPO_ROOT,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        try:
            assert json.loads(proc.stdout.readline())["kind"] == "book_snapshot"
            assert server.holding.wait(30)
            proc.send_signal(signal.SIGINT)
            _, err = proc.communicate(timeout=15)
            assert proc.returncode == 130
            assert "subscription ended" in err and "Traceback" not in err
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
