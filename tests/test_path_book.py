"""Books and trades of a quoted path over a real server: the sizes at the quotes are the book
model's, the trades follow the moves, a stream of any chunk size joins to the unary reply, the
4 MiB cap counts the new fields, and every bad input is refused naming its field."""

from __future__ import annotations

import datetime as dt
import json
import re

import grpc
import httpx
import numpy as np
import pytest
from google.protobuf import json_format

from client import field_violations, join, path_request
from marketdata.v1 import market_data_pb2 as pb
from marketdata.v1 import market_data_pb2_grpc
from server.limits import GRPC_DEFAULT_MAX_MESSAGE_BYTES
from server.sim.book import BookModel, BookParams, Side
from server.sim.market import symbol_key
from server.sim.ticks import TickGrid
from tests.conftest import ServerThread

SECOND = 1 / 23_400  # one second of a 6.5-hour session, in trading days
START = dt.datetime(2026, 3, 2, 14, 30, tzinfo=dt.UTC)
BUY, SELL = pb.Side.Value("BUY"), pb.Side.Value("SELL")
# name: (model, its parameters, delta, tick, spread, book parameters, with time)
CASES = {
    # Small moves, quiet seconds: prints at the touch, moves inside the spread and through it.
    "seconds": (
        "gbm",
        {"start_price": 70.0, "mu": 0.05, "sigma": 0.3},
        SECOND,
        0.01,
        {"spread_bps": 2.0},
        {},
        True,
    ),
    # Days of a volatile price: every move sweeps a short book and closes past it.
    "days": (
        "gbm",
        {"start_price": 70.0, "mu": 0.0, "sigma": 0.8},
        1.0,
        0.01,
        {"spread_bps": 5.0},
        {"levels": 5, "touch_lots": 100.0, "growth": 0.0, "refresh_ticks": 3},
        False,
    ),
    # Values around zero: bids and asks below zero, and a spread from the volatility.
    "around-zero": (
        "arithmetic",
        {"start_price": 0.0, "mu": 0.0, "sigma": 3.0},
        1 / 252,
        0.05,
        {"spread_volatility": 2.0},
        {"size_noise": 1.5, "quiet_print_probability": 0.9},
        True,
    ),
}
SYMBOL = "BOOK/€"


def _request(name: str, periods: int, *, seed: int = 21, **book: object) -> pb.PathRequest:
    model, params, delta, tick, spread, overrides, timed = CASES[name]
    wanted = {"top_of_book": True, "trades": True, **overrides, **book}
    return path_request(
        model,
        periods,
        delta,
        model_params=params,
        seed=seed,
        symbol=SYMBOL,
        tick_size=tick,
        start_time=START if timed else None,
        book=pb.PathBook(**wanted),
        **spread,
    )


def _model(name: str) -> BookModel:
    return BookModel(BookParams(**CASES[name][5]))


def _positive(name: str) -> bool:
    return CASES[name][0] != "arithmetic"


def _ticks(prices: np.ndarray, tick: float) -> np.ndarray:
    return np.rint(np.asarray(prices) / tick).astype(np.int64)


def _same(joined, whole) -> None:
    for field in ("prices", "timestamps", "bid", "ask", "bid_size", "ask_size"):
        assert np.array_equal(getattr(joined, field), getattr(whole, field)), field
    for field in ("trade_ids", "prices", "sizes", "aggressors", "times"):
        assert np.array_equal(getattr(joined.trades, field), getattr(whole.trades, field)), field


@pytest.mark.parametrize("name", CASES)
def test_a_stream_of_any_chunk_size_joins_to_the_whole_reply(md, name):
    request = _request(name, 700)
    whole = md.get_prices(request)
    assert len(whole.bid_size) == len(whole.ask_size) == 700 and len(whole.trades) > 100
    for chunk_size, periods in ((1, 40), (13, 700), (256, 700)):  # one a message: a short path
        chunked = pb.PathRequest()
        chunked.CopyFrom(request)
        chunked.chunk_size, chunked.periods = chunk_size, periods
        with md.stream_prices(chunked) as stream:
            parts = list(stream)
        assert all(part.trades is not None for part in parts)  # present in every chunk, maybe empty
        joined = join(parts)
        if periods < 700:  # a shorter path is the start of the longer one
            assert len(joined.prices) == periods
            shorter = md.get_prices(chunked)
            _same(joined, shorter)
            assert np.array_equal(shorter.bid_size, whole.bid_size[:periods])
            kept = whole.trades.trade_ids < periods * 64
            assert np.array_equal(shorter.trades.sizes, whole.trades.sizes[kept])
        else:
            _same(joined, whole)


@pytest.mark.parametrize("name", CASES)
def test_the_sizes_at_the_quotes_are_the_book_models_best_levels(md, name):
    path = md.get_prices(_request(name, 300, trades=False))
    assert path.trades is None
    tick, model, key = CASES[name][3], _model(name), symbol_key(SYMBOL)
    for i in range(300):
        book = model.book_around(21, key, i, path.bid[i], path.ask[i], tick, 1, positive=_positive(name))
        assert (path.bid_size[i], path.ask_size[i]) == (book.bid_sizes[0], book.ask_sizes[0]), i
    # Another seed, another symbol: other sizes at the same quotes.
    other = md.get_prices(_request(name, 300, seed=22, trades=False))
    assert not np.array_equal(other.bid_size, path.bid_size)


@pytest.mark.parametrize("name", CASES)
def test_each_periods_prints_follow_its_move_through_the_book_before(md, name):
    path = md.get_prices(_request(name, 500))
    tick, model, key, positive = CASES[name][3], _model(name), symbol_key(SYMBOL), _positive(name)
    trades, grid = path.trades, TickGrid(tick)
    assert np.all(np.diff(trades.trade_ids.astype(np.int64)) > 0)
    assert np.array_equal(
        trades.prices, grid.prices(_ticks(trades.prices, tick).astype(float))
    )  # on the grid
    if len(path.timestamps):
        assert np.array_equal(trades.times, path.timestamps[trades.periods.astype(np.int64)])
    else:
        assert len(trades.times) == 0
    periods = trades.periods.astype(np.int64)
    assert periods.min() >= 1  # the first value has no move
    moved = quiet = 0
    for i in range(1, 500):
        mine = np.flatnonzero(periods == i)
        prices, sizes, sides = trades.prices[mine], trades.sizes[mine], trades.aggressors[mine]
        assert np.array_equal(trades.trade_ids[mine], i * 64 + np.arange(len(mine)))
        before, now = path.prices[i - 1], path.prices[i]
        book = model.book_around(21, key, i - 1, path.bid[i - 1], path.ask[i - 1], tick, positive=positive)
        if now == before:  # a quiet period: at most one small print at the touch
            assert len(mine) <= 1
            if len(mine):
                quiet += 1
                level_prices, level_sizes = book.side(Side.SELL if sides[0] == BUY else Side.BUY)
                assert prices[0] == level_prices[0] and 1 <= sizes[0] <= level_sizes[0]
            continue
        moved += 1
        up = now > before
        assert len(mine) >= 1 and np.all(sides == (BUY if up else SELL))
        assert prices[-1] == now  # the last print is at the new value
        # Within the move, one price after another: a path's quotes are around its unrounded
        # value, so the first level may be at the value before itself.
        assert np.all(np.diff(prices) > 0) if up else np.all(np.diff(prices) < 0)
        assert (prices[0] >= before) if up else (prices[0] <= before)
        # Every print at a level of the book before takes that level whole (the closing one,
        # at the new value, a part of the touch).
        level_prices, level_sizes = book.side(Side.SELL if up else Side.BUY)
        for k, (price, size) in enumerate(zip(prices.tolist(), sizes.tolist(), strict=True)):
            at = np.flatnonzero(level_prices == price)
            if k < len(mine) - 1 or (len(at) and at[0] == k):
                assert at.tolist() == [k] and size == level_sizes[k]
            else:
                assert 1 <= size <= level_sizes[0]
    assert moved > 50
    assert quiet > 0 or name == "days"  # a volatile daily price never stands still


def test_a_path_past_the_books_range_has_no_book_there(md):
    # 1e12 with a tick of 1e-9 is 1e21 ticks, past the model's 2^50: sizes 0, no prints.
    far = path_request(
        "gbm",
        50,
        SECOND,
        model_params={"start_price": 1e12, "mu": 0.0, "sigma": 0.3},
        seed=1,
        tick_size=1e-9,
        spread_bps=1.0,
        book=pb.PathBook(top_of_book=True, trades=True),
    )
    path = md.get_prices(far)
    assert not path.bid_size.any() and not path.ask_size.any() and len(path.trades) == 0
    assert np.all(path.ask > path.bid)


def _cap(error: grpc.RpcError) -> int:
    return int(re.search(r"periods must be in \[1, (\d+)\]", error.details())[1])


def test_the_4_mib_cap_counts_sizes_and_a_sweep_of_the_whole_book_every_period(stub):
    # Big hourly moves through a full book of 50 levels: nearly every period prints 51 times.
    request = path_request(
        "gbm",
        10**5,
        1 / 24,
        model_params={"start_price": 7_000.0, "mu": 8.0, "sigma": 4.0},
        seed=5,
        tick_size=0.01,
        spread_bps=1.0,
        start_time=START,
        book=pb.PathBook(top_of_book=True, trades=True),
    )
    with pytest.raises(grpc.RpcError) as refused:
        stub.GetPrices(request)
    assert refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "use StreamPrices" in refused.value.details()
    most = _cap(refused.value)
    request.periods = most
    reply = stub.GetPrices(request)
    per_period = np.bincount(np.array(reply.trades.trade_ids) // 64, minlength=most)
    assert np.mean(per_period[1:] == 51) > 0.9
    assert reply.ByteSize() <= GRPC_DEFAULT_MAX_MESSAGE_BYTES
    # A chunk is held to the same size.
    request.chunk_size = most + 1
    with pytest.raises(grpc.RpcError) as refused:
        next(iter(stub.StreamPrices(request)))
    assert refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert f"chunk_size must be in [1, {most}]" in refused.value.details()


def _bad(**book: object) -> pb.PathRequest:
    return _request("seconds", 10, **book)


@pytest.mark.parametrize(
    ("request_", "field", "words"),
    [
        (_bad(levels=0), "book.levels", "[1, 50]"),
        (_bad(levels=51), "book.levels", "[1, 50]"),
        (_bad(touch_lots=0.5), "book.touch_lots", "[1, 1e+06]"),
        (_bad(touch_lots=float("nan")), "book.touch_lots", "[1, 1e+06]"),
        (_bad(growth=11.0), "book.growth", "[0, 10]"),
        (_bad(size_noise=-0.5), "book.size_noise", "[0, 2]"),
        (_bad(refresh_ticks=0), "book.refresh_ticks", "[1, 4096]"),
        (_bad(refresh_ticks=4097), "book.refresh_ticks", "[1, 4096]"),
        (_bad(quiet_print_probability=1.5), "book.quiet_print_probability", "[0, 1]"),
        (_bad(top_of_book=False, trades=False), "book", "top_of_book or trades"),
        (
            path_request("gbm", 10, model_params={"start_price": 70.0}, book=pb.PathBook(trades=True)),
            "book",
            "needs quotes",
        ),
        (
            path_request(
                "correlated_gbm",
                10,
                model_params={"assets": [pb.CorrelatedAsset(symbol="A", start_price=1.0)]},
                book=pb.PathBook(trades=True),
            ),
            "book",
            "needs quotes",
        ),
    ],
)
def test_bad_book_inputs_are_refused_naming_the_field(md, request_, field, words):
    with pytest.raises(grpc.RpcError) as refused:
        md.get_prices(request_)
    assert refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert words in refused.value.details() and refused.value.details().startswith(field)
    assert [f for f, _ in field_violations(refused.value)] == [field]


def test_over_http_a_paths_book_is_the_grpc_reply_in_canonical_json():
    request = _request("seconds", 300)
    srv = ServerThread(http_port=0)
    try:
        with grpc.insecure_channel(srv.target) as channel:
            expected = market_data_pb2_grpc.MarketDataServiceStub(channel).GetPrices(request)
        with httpx.Client(base_url=f"http://127.0.0.1:{srv.running.http_port}", timeout=30) as http:
            reply = http.post(
                "/marketdata.v1.MarketDataService/GetPrices", json=json_format.MessageToDict(request)
            )
    finally:
        srv.stop()
    assert reply.status_code == 200, reply.text
    assert len(expected.trades.trade_ids) > 32 and len(expected.bid_size) == 300  # arrays written in bulk
    assert reply.json() == json.loads(json_format.MessageToJson(expected))


def test_a_books_work_is_bounded_per_reply_and_per_chunk(stub):
    # Sizes only, so the bytes would allow some 260,000 periods; the book's work allows 16,384.
    request = _request("seconds", 16_385)
    request.book.trades = False
    with pytest.raises(grpc.RpcError) as refused:
        stub.GetPrices(request)
    assert refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "periods must be in [1, 16384]" in refused.value.details()
    assert "computed 16,384 periods a reply at most; use StreamPrices" in refused.value.details()
    request.periods = 16_384
    assert len(stub.GetPrices(request).bid_size) == 16_384
    request.periods, request.chunk_size = 40_000, 16_385
    with pytest.raises(grpc.RpcError) as refused:
        next(iter(stub.StreamPrices(request)))
    assert "chunk_size must be in [1, 16384] (a book's work is bounded per message" in refused.value.details()
    request.ClearField("chunk_size")  # the default chunk is held to the bound
    chunks = [len(c.prices) for c in stub.StreamPrices(request)]
    assert max(chunks) == 16_384 and sum(chunks) == 40_000
