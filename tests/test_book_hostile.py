"""A hostile review of order books, trades and candles (issue 13): each test shows one
problem found by driving a real server from outside, and fails until it is fixed.

Each test says what is wrong and why it matters. Servers run on loopback: in-process with
the market clock off (the test ticks it), or as a child process when the start-up or the
clock itself is what is looked at."""

from __future__ import annotations

import re

import grpc
import pytest

from marketdata.v1 import market_data_pb2 as pb
from marketdata.v1 import market_data_pb2_grpc
from server.limits import FeedLimits
from server.sim.book import BookParams
from server.sim.universe import Instrument, MarketConfig
from tests.conftest import ServerThread
from tests.server_process import ServerProcess, run_server


def _stub(srv: ServerThread) -> tuple[grpc.Channel, market_data_pb2_grpc.MarketDataServiceStub]:
    channel = grpc.insecure_channel(srv.target)
    return channel, market_data_pb2_grpc.MarketDataServiceStub(channel)


# ---- a price the book model cannot place kills the market clock ---------------------------------

_FAST_CLOCK = "[market]\nseed = 1\nwall_seconds_per_tick = 0.02\n"


@pytest.mark.parametrize(
    "market",
    [
        # Accepted at load (start_price <= 1e12, tick_size >= 1e-9), but 2e15 ticks from zero:
        # past the 2^50 ticks sim.book takes.
        '[[instrument]]\nsymbol = "FINE"\nstart_price = 2000000.0\nsigma = 0.2\ntick_size = 1e-9\n',
        # Accepted at load, an ordinary start; one tick of a year at mu = 10 takes it to 1e25.
        'simulated_seconds_per_tick = 31622400.0\n[[instrument]]\nsymbol = "FINE"\n'
        "start_price = 100.0\nmu = 10.0\nsigma = 0.0\n",
    ],
    ids=["start-price-off-the-book-grid", "price-runs-away-at-run-time"],
)
def test_a_price_the_book_cannot_place_never_kills_the_market_clock(python, tmp_path, market):
    # WRONG: sim.book refuses prices past 2^50 ticks (ParameterError), and the market produces
    # them from files load_market accepts. The first tick's trades raise on the clock's
    # thread, which dies with a traceback on stderr: the market freezes for good while the
    # server keeps answering with stale prices, and GetOrderBook answers UNKNOWN with another
    # traceback in the log. Before books, the same market ticked. It matters because the
    # server looks healthy while its live market is dead; a market it cannot run must be
    # refused at start with one line naming the field, and one it runs must keep ticking.
    path = tmp_path / "market.toml"
    path.write_text(_FAST_CLOCK + market)
    with ServerProcess(python, "--port", "0", "--market", str(path)) as server:
        server.wait_for(r"listening on \S+:\d+|error:")
        if "listening on" not in server.log:  # refused at start: that is a fix too
            assert server.wait() == 2
            assert "Traceback" not in server.log
            assert (
                server.log.strip().splitlines()[-1].startswith(f"marketdata-server: error: --market {path}")
            )
            return
        target = re.search(r"listening on (\S+:\d+)", server.log)[1]
        with grpc.insecure_channel(target) as channel:
            stub = market_data_pb2_grpc.MarketDataServiceStub(channel)
            request = pb.SubscribeRequest(symbols=["FINE"], heartbeat_seconds=0.05)
            call = stub.Subscribe(request, timeout=20)
            sequence = 0
            for event in call:  # heartbeats every 0.05 s: the log is looked at often
                sequence = max(sequence, event.sequence)
                if sequence >= 5 or "Traceback" in server.log:
                    break
            call.cancel()
            assert "Traceback" not in server.log, _traceback(server)
            assert sequence >= 5, "the market stopped ticking"
            try:
                stub.GetOrderBook(pb.GetOrderBookRequest(symbol="FINE", depth=1), timeout=10)
            except grpc.RpcError as err:
                assert err.code() != grpc.StatusCode.UNKNOWN, err.details()
        assert server.stop() == 0
        assert "Traceback" not in server.log, _traceback(server)


def _traceback(server: ServerProcess) -> str:
    """The exception line that ends the first traceback of the log, once it is written."""
    return server.wait_for(r"(?m)^[\w.]+(?:Error|Exception): .*$", timeout=10)[0][0]


_MARKET = MarketConfig(
    instruments=(Instrument("AAA", 100.0, 0.05, 0.2, lot_size=100), Instrument("BBB", 20.0, 0.0, 0.9)),
    seed=11,
    book=BookParams(levels=20),
)


# ---- a Subscribe that fails on its first books keeps its slot ------------------------------------


def test_a_subscribe_that_fails_on_its_first_books_gives_its_slot_back(monkeypatch):
    # Subscribe registers the subscriber (a --max-subscribers slot, its book subscriptions,
    # the watched books) before it queues the first books. When those fail (once, a book the
    # model could not place; here a fault forced in), whatever the call took must be given
    # back: each such call used to keep a slot for good, and with --max-subscribers 2, two of
    # them locked every later subscriber out.
    srv = ServerThread(market=_MARKET, feed_limits=FeedLimits(max_subscribers=2))
    feed = srv.running.servicer.feed

    def broken(*_):
        raise RuntimeError("forced fault in the first books")

    try:
        channel, stub = _stub(srv)
        with channel:
            monkeypatch.setattr(type(feed.depth_encoding), "snapshot", broken)
            books = pb.SubscribeRequest(data=[pb.DataSubscription(type=pb.ORDER_BOOK, depth=5)])
            for _ in range(3):
                with pytest.raises(grpc.RpcError) as caught:
                    next(iter(stub.Subscribe(books, timeout=10)))
                assert caught.value.code() == grpc.StatusCode.UNKNOWN, caught.value.details()
            monkeypatch.undo()
            assert (feed.subscriber_count, feed.book_subscriptions) == (0, 0)
            assert not feed._watched, "the clock still computes books for subscribers long gone"
            prices = stub.Subscribe(pb.SubscribeRequest(symbols=["AAA"]), timeout=10)
            assert next(iter(prices)).HasField("snapshot")  # not RESOURCE_EXHAUSTED (--max-subscribers)
            prices.cancel()
    finally:
        srv.stop()


# ---- the default depth is refused by a server with a lower --max-book-depth -----------------------


def test_an_unset_depth_is_served_by_a_server_with_a_lower_max_book_depth():
    # WRONG: depth 0 means "the default", which book_depth takes down to the market's own
    # [book] levels when it has fewer than 10, but not to --max-book-depth. On a server run
    # with --max-book-depth 5, every request that leaves the depth unset (GetOrderBook, a
    # DataSubscription, a ManageSubscription SymbolList) is refused with RESOURCE_EXHAUSTED
    # "may be at most 5 levels ..., got 10", quoting a 10 the client never sent. An operator
    # lowering the limit breaks every client that relies on the default; the default should
    # fit the server's limit, as it fits the market's levels.
    srv = ServerThread(market=_MARKET, feed_limits=FeedLimits(max_book_depth=5))
    try:
        channel, stub = _stub(srv)
        with channel:
            reply = stub.GetOrderBook(pb.GetOrderBookRequest(symbol="AAA"), timeout=10)
            assert reply.book.depth == 5 and len(reply.book.ask_prices) == 5
            request = pb.SubscribeRequest(data=[pb.DataSubscription(type=pb.ORDER_BOOK, symbols=["AAA"])])
            call = stub.Subscribe(request, timeout=10)
            assert next(iter(call)).book_snapshot.books[0].depth == 5
            call.cancel()
    finally:
        srv.stop()


# ---- prints of a move when the touch sits on the last price ---------------------------------------


@pytest.mark.parametrize(
    ("instrument", "book"),
    [
        # A rate held near 0 (it returns there often): a spread in basis points of 0 is none.
        (
            Instrument.of_model(
                "RATE", "ornstein_uhlenbeck", {"start": 0.0, "mean": 0.0, "kappa": 50.0, "sigma": 0.3}, 0.01
            ),
            BookParams(),
        ),
        # spread_bps = 0, which [book] accepts (0 to 10000).
        (Instrument("ZERO", 100.0, 0.0, 0.9), BookParams(spread_bps=0.0)),
    ],
    ids=["rate-at-zero", "spread-bps-0"],
)
def test_the_prints_of_a_move_lie_within_the_move_and_the_old_price_only_at_the_old_touch(instrument, book):
    # When half the spread rounds to nothing (a rate at exactly 0, where spread_bps x |price|
    # is 0, or spread_bps = 0), the best bid sits on the last price. A move down then hits
    # that bid first: a print at the old price, which is a trade at the bid, as markets have.
    # The README once promised prints strictly inside (p(n-1), p(n)]; what holds is: every
    # print lies between p(n-1) and p(n), the last one at p(n), and one at p(n-1) only where
    # the old touch on the side hit was at p(n-1). The price is always in [bid, ask).
    market = MarketConfig(instruments=(instrument,), seed=5, book=book, simulated_seconds_per_tick=3600.0)
    srv = ServerThread(market=market, feed_limits=FeedLimits(trade_history=1_000))
    symbol = instrument.symbol
    try:
        channel, stub = _stub(srv)
        with channel:
            wrong, at_old_price, downs = [], 0, 0
            last = stub.GetLastPrices(pb.GetLastPricesRequest(symbols=[symbol]), timeout=10).prices[0].price
            for sequence in range(1, 31):
                top = stub.GetOrderBook(pb.GetOrderBookRequest(symbol=symbol, depth=1), timeout=10).book
                if not top.bid_prices[0] <= last < top.ask_prices[0]:
                    wrong.append(("price outside [bid, ask)", sequence - 1, top.bid_prices[0], last))
                srv.advance_market(1)
                price = (
                    stub.GetLastPrices(pb.GetLastPricesRequest(symbols=[symbol]), timeout=10).prices[0].price
                )
                trades = stub.GetTrades(pb.GetTradesRequest(symbol=symbol, limit=100), timeout=10).trades
                prints = [
                    p for n, p in zip(trades.trade_ids, trades.prices, strict=True) if n // 64 == sequence
                ]
                if price != last:
                    downs += price < last
                    low, high = min(last, price), max(last, price)
                    wrong += [
                        ("outside the move", sequence, last, price, p) for p in prints if not low <= p <= high
                    ]
                    if prints[-1] != price:
                        wrong.append(("last print not at the new price", sequence, price, prints[-1]))
                    touch = top.bid_prices[0] if price < last else top.ask_prices[0]
                    for p in prints:
                        if p == last:
                            at_old_price += 1
                            if p != touch:
                                wrong.append(("old price printed away from the touch", sequence, p, touch))
                last = price
            assert downs, "no move down: the case is not tested"
            assert at_old_price, "no print at the old price: the case is not tested"
            assert not wrong, wrong[:5]
    finally:
        srv.stop()


# ---- history limits: no upper bound -------------------------------------------------------------


@pytest.mark.parametrize("flag", ["--trade-history", "--candle-history"])
def test_a_history_limit_too_large_is_one_line_not_a_traceback(python, flag):
    # WRONG: --trade-history and --candle-history have a lower bound only. A value past what
    # a deque can hold (here 10^20) passes the flag checks and crashes the start with an
    # OverflowError traceback and exit 1, instead of the one-line, exit-2 refusal naming the
    # flag that every other bad flag gets. (No upper bound also means an operator can ask for
    # histories that GetTrades cannot send: see the next test.)
    done = run_server(python, "--port", "0", flag, "100000000000000000000")
    assert "Traceback" not in done.stderr, done.stderr
    assert done.returncode == 2
    assert flag in done.stderr.strip().splitlines()[-1]


def test_a_whole_trade_history_fits_in_one_get_trades_reply():
    # WRONG: GetTrades accepts any limit up to --trade-history, which has no upper bound, and
    # answers in one message. At 33 bytes a print, a history past ~127,000 prints makes a
    # reply over gRPC's 4 MiB default: with --trade-history 200000 a full GetTrades ends with
    # RESOURCE_EXHAUSTED on the client ("Received message larger than max"), a call the
    # README documents as valid. Prices cap a message for this very reason
    # (--max-chunk-size); the history (or a reply's share of it) needs the same cap.
    try:
        limits = FeedLimits(trade_history=200_000)
    except ValueError:
        return  # refused: the limit is capped to what one reply can carry
    wild = MarketConfig(
        instruments=(Instrument("WILD", 1000.0, 0.0, 3.0),),
        seed=3,
        book=BookParams(spread_bps=0.0),
        simulated_seconds_per_tick=60.0,
    )
    srv = ServerThread(market=wild, feed_limits=limits)
    try:
        feed = srv.running.servicer.feed

        async def tick_until_full() -> int:  # about 50 prints a tick: 2,600 ticks or so
            printed = 0
            for _ in range(4_000):
                if printed >= 130_000:
                    break
                feed.advance(exchange_time=1_800_000_000.0)
                printed += len(feed.depth.trades[0] or ())
            return printed

        assert srv.call(tick_until_full(), timeout=60) >= 130_000
        channel, stub = _stub(srv)
        with channel:
            try:
                reply = stub.GetTrades(pb.GetTradesRequest(symbol="WILD", limit=200_000), timeout=30)
            except grpc.RpcError as err:  # a refusal naming a server limit would be a fix too
                assert "larger than max" not in err.details(), err.details()
                assert err.code() == grpc.StatusCode.INVALID_ARGUMENT and "--" in err.details()
                return
        assert len(reply.trades.trade_ids) >= 130_000
    finally:
        srv.stop()


def test_a_book_snapshot_of_every_symbol_a_server_allows_reaches_the_client():
    # WRONG: a book_snapshot carries every subscribed book in one MarketEvent, about 1.6 KB a
    # book at depth 50, and nothing keeps that under gRPC's 4 MiB default: --max-symbols has
    # no upper bound, so a server run with a market of 3,000 instruments and --max-symbols
    # 3000 accepts Subscribe(data=[ORDER_BOOK depth 50]) and then sends a 4.9 MB first event
    # that the client refuses ("Received message larger than max"); the subscription is dead
    # on arrival, and the same happens to any conflated subscriber's resnapshot. The snapshot
    # must come in messages that fit (or the request be refused naming the limit).
    market = MarketConfig(
        instruments=tuple(Instrument(f"S{n}", 100.0, 0.0, 0.3) for n in range(3_000)), seed=1
    )
    srv = ServerThread(market=market, feed_limits=FeedLimits(max_symbols=3_000))
    try:
        channel, stub = _stub(srv)
        with channel:
            request = pb.SubscribeRequest(data=[pb.DataSubscription(type=pb.ORDER_BOOK, depth=50)])
            call = stub.Subscribe(request, timeout=30)
            seen: set[str] = set()
            try:
                for event in call:  # the snapshot, in as many events as it takes
                    if not event.HasField("book_snapshot"):
                        break
                    seen.update(book.symbol for book in event.book_snapshot.books)
                    if len(seen) == 3_000:
                        break
            except grpc.RpcError as err:  # a refusal naming a server limit would be a fix too
                assert "larger than max" not in err.details(), err.details()
                assert err.code() == grpc.StatusCode.RESOURCE_EXHAUSTED and "--" in err.details()
                return
            finally:
                call.cancel()
            assert len(seen) == 3_000
    finally:
        srv.stop()
