"""The client's book helper, its numpy events and the CLI's ladder against a real server:
what the client rebuilds is the server's own book at every sequence."""

from __future__ import annotations

import asyncio
import json
import subprocess

import grpc
import numpy as np
import pytest

from client import AsyncMarketDataClient, BookKeeper, DecodedEvent, MarketDataClient, data_subscription
from marketdata.v1 import market_data_pb2 as pb
from server.limits import FeedLimits
from tests.conftest import REPO_ROOT, ServerThread, server_process
from tests.test_book_feed import MARKET, SYMBOLS


@pytest.fixture
def live():
    srv = ServerThread(market=MARKET, feed_limits=FeedLimits(buffer_ticks=1_000))
    yield srv
    srv.stop()


@pytest.mark.parametrize("numpy", [True, False], ids=["numpy-events", "protobuf-events"])
def test_the_client_book_is_the_servers_book_at_every_sequence(live, numpy):
    depth = 6
    keeper = BookKeeper(raise_on_gap=True)
    with MarketDataClient(live.target) as md:
        data = [data_subscription("order_book", depth=depth), data_subscription("trades")]
        with md.subscribe(data=data, numpy=numpy, timeout=60) as subscription:
            events = iter(subscription)
            first = next(events)
            assert isinstance(first, DecodedEvent) == numpy
            keeper.apply(first)
            for sequence in range(1, 16):
                live.advance_market(1)
                while True:
                    event = next(events)
                    keeper.apply(event)
                    if event.sequence == sequence and getattr(event, "kind", None) in ("book_update", None):
                        if numpy or event.HasField("book_update"):
                            break
                for symbol in SYMBOLS:
                    reply = md.get_order_book(symbol, depth)
                    book = keeper[symbol]
                    assert reply.sequence == book.sequence == sequence
                    np.testing.assert_array_equal(book.bid_prices, reply.book.bid_prices)
                    np.testing.assert_array_equal(book.bid_sizes, reply.book.bid_sizes)
                    np.testing.assert_array_equal(book.ask_prices, reply.book.ask_prices)
                    np.testing.assert_array_equal(book.ask_sizes, reply.book.ask_sizes)
                    assert book.best_bid < book.best_ask
    assert keeper.gaps == 0 and keeper.invalid == 0


def test_the_async_client_decodes_live_books_into_numpy(live):
    async def first_books() -> DecodedEvent:
        async with AsyncMarketDataClient(live.target) as md:
            subscription = md.subscribe(data=[data_subscription("order_book", ["AAA"], depth=3)], numpy=True)
            async for event in subscription:
                subscription.cancel()
                return event
        raise AssertionError("no event")

    event = asyncio.run(first_books())
    assert event.kind == "book_snapshot"
    book = event.books[0]
    with MarketDataClient(live.target) as md:
        reply = md.get_order_book("AAA", 3)
    np.testing.assert_array_equal(book.ask_prices, reply.book.ask_prices)
    assert book.bid_sizes.dtype.kind in "iu" and len(book.bid_prices) == 3


def test_the_async_managed_subscription_changes_books_and_ends_with_the_servers_error(live):
    async def manage() -> tuple[list, grpc.aio.AioRpcError, BaseException]:
        async with AsyncMarketDataClient(live.target) as md:
            async with md.manage_subscription(numpy=True) as managed:
                events = aiter(managed)
                await managed.subscribe(["AAA", "NOPE"], data_type="order_book", depth=3)
                seen = [await anext(events), await anext(events)]
                await managed.subscribe(["AAA"], data_type="order_book", depth=5)
                seen += [await anext(events), await anext(events)]
                live.advance_market(1)
                seen.append(await anext(events))
                await managed.subscribe(["AAA"], data_type="order_book", depth=99)  # past the model's 50
                with pytest.raises(grpc.aio.AioRpcError) as ended:
                    await anext(events)
                with pytest.raises((grpc.aio.AioRpcError, asyncio.InvalidStateError)) as after:
                    await managed.unsubscribe(["AAA"], data_type="order_book")
                return seen, ended.value, after.value

    seen, ended, after = asyncio.run(manage())
    assert [event.kind for event in seen] == [
        "status",
        "book_snapshot",
        "status",
        "book_snapshot",
        "book_update",
    ]
    codes = [(s.symbol, s.code) for s in seen[0].message.status.symbols]
    assert codes == [("AAA", pb.SymbolStatus.SUBSCRIBED), ("NOPE", pb.SymbolStatus.UNKNOWN_SYMBOL)]
    assert [len(book.bid_prices) for book in seen[1].books] == [3]
    assert [len(book.bid_prices) for book in seen[3].books] == [5]  # the new depth, snapshotted again
    keeper = BookKeeper(raise_on_gap=True)
    for event in seen:
        keeper.apply(event)
    with MarketDataClient(live.target) as md:
        reply = md.get_order_book("AAA", 5)
    assert keeper["AAA"].sequence == reply.sequence
    np.testing.assert_array_equal(keeper["AAA"].ask_sizes, reply.book.ask_sizes)
    assert ended.code() == grpc.StatusCode.INVALID_ARGUMENT and "depth" in ended.details()
    assert after is not None
    assert live.running.servicer.feed.book_subscriptions == 0


def test_the_cli_ladder_and_trades_follow_a_live_market_as_json_lines(python, tmp_path):
    market = tmp_path / "market.toml"
    market.write_text(
        "[market]\nseed = 4\nwall_seconds_per_tick = 0.05\n\n"
        '[[instrument]]\nsymbol = "AAA"\nstart_price = 100.0\nsigma = 0.9\nlot_size = 10\n'
    )
    with server_process(python, "--market", str(market)) as (_, target):
        books = subprocess.run(
            [python, "-m", "client", "--target", target, "subscribe", "--book", "4", "--count", "5", "AAA"],
            cwd=REPO_ROOT,
            capture_output=True,
            text=True,
            timeout=60,
        )
        trades = subprocess.run(
            [python, "-m", "client", "--target", target, "subscribe", "--trades", "--count", "3", "AAA"],
            cwd=REPO_ROOT,
            capture_output=True,
            text=True,
            timeout=60,
        )
    assert books.returncode == 0, books.stderr
    lines = [json.loads(line) for line in books.stdout.splitlines()]
    assert lines[0]["kind"] == "book_snapshot" and {line["kind"] for line in lines[1:]} == {"book_update"}
    sequences = [line["books"]["AAA"]["sequence"] for line in lines]
    assert sequences == sorted(sequences) and len(set(sequences)) == len(sequences)
    for line in lines:
        book = line["books"]["AAA"]
        bids, asks = [p for p, _ in book["bids"]], [p for p, _ in book["asks"]]
        assert len(bids) == len(asks) == 4 and "stale" not in book
        assert bids == sorted(bids, reverse=True) and asks == sorted(asks) and bids[0] < asks[0]
    assert trades.returncode == 0, trades.stderr
    lines = [json.loads(line) for line in trades.stdout.splitlines()]
    assert lines[0]["kind"] == "heartbeat"  # the sign that the subscription is live
    prints = lines[1:]
    assert prints and {p["kind"] for p in prints} == {"trade"} and {p["symbol"] for p in prints} == {"AAA"}
    ids = [p["trade_id"] for p in prints]
    assert ids == sorted(ids) and all(p["size"] > 0 and p["side"] in ("BUY", "SELL") for p in prints)
